package policy

import (
	"slices"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/tenantproxy/tenantproxy/internal/pgident"
)

// settingChange is one change of a setting: by SET, SET LOCAL or RESET, by a SET clause of a function, or by
// a startup parameter.
type settingChange struct {
	// what names the change in messages, for example "SET ROLE" or "CREATE FUNCTION ... SET search_path".
	what string
	// name is the setting's canonical lower-case name.
	name string
	rule settingRule
	// reset is set for RESET name and SET name TO DEFAULT; current for SET name FROM CURRENT.
	reset, current bool
	local          bool
	// inFunction is set for the SET clause of a function: it is checked but not tracked.
	inFunction bool
	// args are the values, as PostgreSQL receives them.
	args []string
}

// variableSet classifies a VariableSetStmt: a statement when fnTag is empty, else the SET clause of the
// function statement fnTag.
func (s *stmtCtx) variableSet(v *pg_query.VariableSetStmt, fnTag string) {
	kind := v.GetKind()
	switch kind {
	case pg_query.VariableSetKind_VAR_RESET_ALL:
		if fnTag == "" {
			s.need(levelRead, "RESET ALL")
			s.effect(Effect{Kind: EffectResetAll})
		}
		return
	case pg_query.VariableSetKind_VAR_SET_MULTI:
		if fnTag != "" {
			s.refuse(SQLStatePolicy, "%s ... SET %s is not supported by tenantproxy", fnTag, v.GetName())
			return
		}
		s.setMulti(v)
		return
	}
	verb := "SET"
	switch {
	case fnTag != "":
		verb = fnTag + " ... SET"
	case kind == pg_query.VariableSetKind_VAR_RESET:
		verb = "RESET"
	case v.GetIsLocal():
		verb = "SET LOCAL"
	}
	if fnTag == "" {
		s.need(levelRead, verb)
	}
	lower, ok := NormalizeSettingName(v.GetName())
	if !ok {
		s.refuse(SQLStatePolicy, "%s %s is not allowed: it is not the name of a setting", verb, pgident.Quote(v.GetName()))
		return
	}
	name, rule := settingRuleFor(lower, s.g.tenantSetting)
	ch := settingChange{
		what:       verb + " " + settingDisplayName(name),
		name:       name,
		rule:       rule,
		reset:      kind == pg_query.VariableSetKind_VAR_RESET || kind == pg_query.VariableSetKind_VAR_SET_DEFAULT,
		current:    kind == pg_query.VariableSetKind_VAR_SET_CURRENT,
		local:      v.GetIsLocal(),
		inFunction: fnTag != "",
	}
	if rule.kind != settingRefused {
		for _, a := range v.GetArgs() {
			if a.GetTypeCast() != nil {
				s.refuse(SQLStateInvalidValue, "%s with a typed value (such as SET TIME ZONE INTERVAL ...) is not supported by tenantproxy: give the value as a string, for example SET TIME ZONE 'UTC'", ch.what)
				return
			}
			text, ok := constText(a.GetAConst())
			if !ok {
				s.refuse(SQLStateInvalidValue, "%s is not allowed: its value is not a constant", ch.what)
				return
			}
			ch.args = append(ch.args, text)
		}
	}
	s.applySetting(ch)
}

// settingDisplayName names a setting in messages as SQL spells its statement.
func settingDisplayName(name string) string {
	switch name {
	case "role":
		return "ROLE"
	case "session_authorization":
		return "SESSION AUTHORIZATION"
	}
	return name
}

// setMulti classifies SET TRANSACTION, SET SESSION CHARACTERISTICS AS TRANSACTION and SET TRANSACTION
// SNAPSHOT. SESSION CHARACTERISTICS sets the default_transaction_* settings, which are tracked.
func (s *stmtCtx) setMulti(v *pg_query.VariableSetStmt) {
	switch v.GetName() {
	case "TRANSACTION":
		s.need(levelRead, "SET TRANSACTION")
		s.transactionOptions(v.GetArgs(), "SET TRANSACTION READ WRITE")
	case "TRANSACTION SNAPSHOT":
		s.need(levelRead, "SET TRANSACTION SNAPSHOT")
	case "SESSION CHARACTERISTICS":
		s.need(levelRead, "SET SESSION CHARACTERISTICS")
		for _, o := range v.GetArgs() {
			d := o.GetDefElem()
			var value string
			switch d.GetDefname() {
			case "transaction_isolation":
				text, ok := constText(d.GetArg().GetAConst())
				if !ok {
					s.refuse(SQLStateInvalidValue, "SET SESSION CHARACTERISTICS is not allowed: its isolation level is not a constant")
					return
				}
				value = text
			case "transaction_read_only", "transaction_deferrable":
				value = "off"
				if defBool(d.GetArg(), true) {
					value = "on"
				}
			default:
				s.refuse(SQLStatePolicy, "SET SESSION CHARACTERISTICS with %s is not supported by tenantproxy", d.GetDefname())
				return
			}
			name, rule := settingRuleFor("default_"+d.GetDefname(), s.g.tenantSetting)
			s.applySetting(settingChange{what: "SET SESSION CHARACTERISTICS (" + name + ")", name: name, rule: rule, args: []string{value}})
		}
	default:
		s.refuse(SQLStatePolicy, "SET %s is not supported by tenantproxy", v.GetName())
	}
}

// applySetting checks one setting change against its rule and records its effect.
func (s *stmtCtx) applySetting(ch settingChange) {
	r := ch.rule
	if ch.inFunction && ch.reset {
		return // removing a setting from a function's SET clauses changes nothing a client could abuse
	}
	if r.kind == settingRefused {
		s.refuse(SQLStatePolicy, "%s is not allowed: %s", ch.what, r.reason)
		return
	}
	if ch.current {
		return // FROM CURRENT keeps the value the session has
	}
	value := ""
	if !ch.reset {
		switch {
		case len(ch.args) == 0:
			s.refuse(SQLStateInvalidValue, "%s is not allowed: it has no value", ch.what)
			return
		case len(ch.args) > 1 && r.kind != settingList && r.kind != settingSearchPath:
			s.refuse(SQLStateInvalidValue, "%s is not allowed: it takes only one argument", ch.what)
			return
		}
		value = strings.Join(ch.args, ", ")
	}
	e := Effect{Kind: EffectSetTracked, Name: ch.name, Value: value, Reset: ch.reset}
	if ch.local {
		e.Kind = EffectSetLocal
	}
	switch r.kind {
	case settingSearchPath:
		if ch.reset {
			// RESET search_path (SET search_path TO DEFAULT) restores the tenant's search_path, not the
			// server's default: the session rewrites it (see policy/sessionguard).
			s.effect(e)
			return
		}
		s.info.schemas = append(s.info.schemas, ch.args...)
		quoted := make([]string, len(ch.args))
		for i, a := range ch.args {
			quoted[i] = pgident.Quote(a)
		}
		e.List, e.Value = slices.Clip(ch.args), strings.Join(quoted, ", ")
	case settingClientEncoding:
		if !ch.reset {
			if IsClientOnlyEncoding(value) {
				s.refuse(SQLStatePolicy, "%s TO %s is not allowed: it is a client-only encoding, whose characters can hide a quote from tenantproxy's parser", ch.what, pgident.QuoteLiteral(value))
				return
			}
			if !ClientEncodingAllowed(value) {
				s.refuse(SQLStateInvalidValue, "%s is not allowed: %s is not an encoding PostgreSQL knows", ch.what, pgident.QuoteLiteral(value))
				return
			}
		}
	case settingStandardConformingStrings:
		if on, ok := parseBool(value); !ch.reset && (!ok || !on) {
			s.refuse(SQLStatePolicy, "%s TO %s is not allowed: tenantproxy reads statements with standard_conforming_strings on, and the server must too", ch.what, pgident.QuoteLiteral(value))
		}
		return // always on: nothing to track
	case settingTransaction:
		if r.readOnly && !s.turnsReadOnlyOn(ch, value) {
			s.readWrite(ch.what + " TO off")
		}
		return // it lasts until the end of the transaction
	}
	if r.readOnly && !s.turnsReadOnlyOn(ch, value) {
		if ch.reset {
			s.readWrite(ch.what)
		} else {
			s.readWrite(ch.what + " TO " + pgident.QuoteLiteral(value))
		}
	}
	if !ch.inFunction {
		s.effect(e)
	}
}

// turnsReadOnlyOn reports whether a change of a read-only setting keeps transactions read-only.
func (s *stmtCtx) turnsReadOnlyOn(ch settingChange, value string) bool {
	if ch.reset {
		return false
	}
	on, ok := parseBool(value)
	return ok && on
}

// readWrite marks a statement that turns read-only transactions off, which a read-only user may not do.
func (s *stmtCtx) readWrite(tag string) {
	s.info.readWrite = true
	s.info.tag = tag
}

// StartupSetting decides whether a client's startup parameter name=value (or -c name=value in the options
// parameter) may be applied for a user of profile p whose tenant owns allowedSchemas. The rules are those
// of SET: an allowed setting yields one EffectSetTracked (Stmt 0) that the session tracks and replays;
// search_path is read as PostgreSQL reads a list of identifiers ("acme, public"). Parameters that are not
// settings (user, database, replication, options, _pq_.*) are the session's to handle before this.
func (g *Guard) StartupSetting(name, value string, p Profile, allowedSchemas []string) Analysis {
	s := stmtCtx{g: g}
	s.need(levelRead, "startup parameter")
	lower, ok := NormalizeSettingName(name)
	if !ok {
		s.refuse(SQLStatePolicy, "startup parameter %s is not allowed: it is not the name of a setting", pgident.Quote(name))
	} else {
		canon, rule := settingRuleFor(lower, g.tenantSetting)
		ch := settingChange{what: "startup parameter " + canon, name: canon, rule: rule, args: []string{value}}
		if rule.kind == settingSearchPath {
			list, err := splitIdentifierList(value)
			if err != "" {
				s.refuse(SQLStateInvalidValue, "startup parameter search_path is not allowed: %s", err)
			}
			ch.args = list
		}
		if s.ref == nil {
			s.applySetting(ch)
		}
	}
	c := Classification{stmts: []stmtInfo{s.info}, effects: s.effects, refusal: s.ref}
	if c.refusal != nil {
		c.effects = nil
	}
	return c.Decide(p, allowedSchemas)
}

// splitIdentifierList splits a list of identifiers separated by commas as PostgreSQL's
// SplitIdentifierString does: double-quoted names are taken as they are (with "" for a quote), unquoted
// names are lower-cased and truncated to 63 bytes, white space around names is ignored. It returns a
// description of the error when the list is malformed.
func splitIdentifierList(raw string) ([]string, string) {
	var out []string
	i := skipSpace(raw, 0)
	if i == len(raw) {
		return out, ""
	}
	for {
		var name string
		if raw[i] == '"' {
			var b strings.Builder
			j := i + 1
			for {
				k := strings.IndexByte(raw[j:], '"')
				if k < 0 {
					return nil, "a quoted name has no closing quote"
				}
				b.WriteString(raw[j : j+k])
				j += k + 1
				if j < len(raw) && raw[j] == '"' {
					b.WriteByte('"')
					j++
					continue
				}
				break
			}
			name, i = b.String(), j
			if name == "" {
				return nil, "a quoted name is empty"
			}
		} else {
			j := i
			for j < len(raw) && raw[j] != ',' && !isSpace(raw[j]) {
				j++
			}
			if j == i {
				return nil, "a name is missing"
			}
			name, i = asciiLower(raw[i:j]), j
		}
		if len(name) > 63 {
			name = truncateIdentifier(name)
		}
		out = append(out, name)
		i = skipSpace(raw, i)
		if i == len(raw) {
			return out, ""
		}
		if raw[i] != ',' {
			return nil, "names must be separated by commas"
		}
		i = skipSpace(raw, i+1)
		if i == len(raw) {
			return nil, "a name is missing after the last comma"
		}
	}
}

// truncateIdentifier cuts name to at most 63 bytes without splitting a UTF-8 character, as PostgreSQL
// truncates identifiers.
func truncateIdentifier(name string) string {
	n := 63
	for n > 0 && name[n]&0xC0 == 0x80 {
		n--
	}
	return name[:n]
}

// skipSpace returns the index of the first byte at or after i that is not white space.
func skipSpace(s string, i int) int {
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	return i
}

// isSpace reports whether c is white space as C's isspace sees it.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}
