package main

import (
	"net"
	"net/url"
)

// dsn returns the URI a client pastes to connect as user: user name and password percent-encoded as a
// URI's userinfo must be ("alice@acme" is "alice%40acme": libpq, psql and every driver split the
// authority at the first '@').
func dsn(user, password, host, port, database string) string {
	u := url.URL{Scheme: "postgresql", User: url.UserPassword(user, password), Host: net.JoinHostPort(host, port), Path: "/" + database}
	return u.String()
}
