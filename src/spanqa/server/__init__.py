"""HTTP serving: decode a request, call the `Reader`, encode the response."""
