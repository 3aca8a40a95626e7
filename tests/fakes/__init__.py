"""In-tree fakes that speak the real wire protocols over real sockets."""
