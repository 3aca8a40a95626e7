"""The developer launcher, the only part above the services: the `likeness` command, the supervisor of
`likeness up`, the embedded NATS and Postgres, health probes, throwaway backends for tests and benches,
and the chain commands (`likeness edit`, `likeness audit`), which speak to the system over its public
interfaces (the bus, the event log, the blob store), never through a service's package."""
