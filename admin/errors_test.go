package admin

import "github.com/jackc/pgerrcode"

// ErrNotAvailable stands for a relay that cannot answer (shutting down) in the tests of what the console
// does then.
var ErrNotAvailable = &Error{Code: pgerrcode.AdminShutdown, Message: "tenantproxy: the relay is shutting down"}
