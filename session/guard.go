package session

import "strconv"

// The statement guard is not part of the relay: the relay asks its Config.Guard (the Guard interface in
// types.go) for a Verdict on every Query and Parse message. The production guard, which adapts the
// statement guard of package policy (refusals, emulations, pins, tracked settings, tenant-scoped
// notification channels), lives in package policy/sessionguard; session depends only on the interface.

// channelSep separates the tenant from the client's channel name on the server: the guard rewrites
// LISTEN, UNLISTEN and NOTIFY to the channel "<tenant>.<channel>", and the relay gives every
// notification back to the client without the prefix.
const channelSep = "."

// ChannelSeparator is channelSep, for guards that rewrite channels.
const ChannelSeparator = channelSep

// appendRefusal appends the ErrorResponse of a refused statement: severity ERROR, the Verdict's SQLSTATE
// and message, and its Position (field 'P') when it is the server's own error with a cursor position, so
// that drivers show the column as on a direct connection.

func appendRefusal(b []byte, v Verdict) []byte {
	b, st := beginMsg(b, msgErrorResponse)
	b = append(b, 'S')
	b = appendCString(b, "ERROR")
	b = append(b, 'V')
	b = appendCString(b, "ERROR")
	b = append(b, 'C')
	b = appendCString(b, v.Code)
	b = append(b, 'M')
	b = appendCString(b, v.Message)
	if v.Position > 0 {
		b = append(b, 'P')
		b = appendCString(b, strconv.Itoa(v.Position))
	}
	b = append(b, 0)
	return endMsg(b, st)
}

// terminatedMessage is PostgreSQL's FATAL for a backend ended by pg_terminate_backend.
const terminatedMessage = "terminating connection due to administrator command"

// appendTerminated appends the FATAL 57P01 PostgreSQL sends a client whose backend was terminated.
// Session.terminateOwnBackend sends it.
func appendTerminated(b []byte) []byte {
	return appendError(b, "FATAL", "57P01", terminatedMessage)
}
