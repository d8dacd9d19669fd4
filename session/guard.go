package session

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
