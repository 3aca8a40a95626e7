"""Spoken chat messages: a recording checked (audio.py, formats.py, pcm.py, webm.py; compressed audio decoded
by decode.py with PyAV), then transcribed by
the backend the settings choose (transcribers.py: PocketSphinx offline, or an OpenAI-compatible server).

Every refusal is a gateway error (services.gateway.errors) with its own code:

    PayloadTooLarge  413  audio_too_large
    UnsupportedMedia 415  unsupported_audio (not audio by its content)
    Unprocessable    422  no_speech (empty, silent, or no words heard), audio_too_long, audio_length_unknown,
                          damaged_audio, sample_rate_too_low, transcription_refused (the server said 4xx)
    Unavailable      503  transcription_unavailable (server down, 5xx twice, recognizer process died)
    UpstreamTimeout  504  transcription_timeout

Nothing is imported here, so the recognizer's worker process (sphinx_worker.py) starts without the SDK.
"""
