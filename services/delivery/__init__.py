"""The delivery service: sends finished pictures (and failures) to Telegram, Google Chat and signed webhooks."""
