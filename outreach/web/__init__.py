"""The HTTP side: the JSON API, tracking, unsubscribe and the pages people use."""
