"""The HTTP API and the web page. Never imports torch: the API image has none."""
