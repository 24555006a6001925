"""The web client: pages and static files served at ``/`` for people in a browser,
signed in through the server's own OAuth sign-in and kept in a session cookie."""
