"""The web side: server-rendered operator pages (work without JavaScript) and the JSON API; see app.create_app."""
