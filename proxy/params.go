package proxy

import (
	"fmt"
	"strings"

	"github.com/jackc/pgerrcode"
	"go.uber.org/zap"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/pgerr"
	"github.com/tenantproxy/tenantproxy/internal/pgparam"
	"github.com/tenantproxy/tenantproxy/policy"
)

// Startup parameters other than user, database and replication are settings, as on PostgreSQL: those the
// guard would allow as SET are handed to the relay, which applies them on every lease like a tracked SET;
// any other fails the connection with the error PostgreSQL gives for an unknown setting (42704), or with
// 42501 naming it for one the tenant may not set (session_replication_role, a custom setting, ...). The
// settings that make the tenant's context — role, session_authorization, search_path, the tenant setting —
// stay the tenant's: a client's startup value for them is ignored (and logged), as is
// standard_conforming_strings, which stays on for the guard's parser; a client-only client_encoding fails
// the connection with 22023. The options parameter is read as the server reads it: -c name=value,
// -cname=value and --name=value, split at white space that is not escaped with a backslash.

// startupGuard returns the guard that judges startup parameters: the rules of SET, with the tenant
// setting of cfg. It caches nothing, since startup parameters are not statements.
func startupGuard(cfg *config.Config) *policy.Guard {
	return policy.NewGuard(policy.GuardConfig{TenantSetting: cfg.Tenancy.Setting, CacheSize: 1})
}

// startupSettings decides the startup parameters of a client of tenant t whose user has profile.
func (s *Server) startupSettings(cfg *config.Config, pkt *startupPacket, profile string, t config.Tenant) (map[string]string, *pgerr.Error) {
	p, err := policy.ParseProfile(profile)
	if err != nil {
		return nil, pgerr.Fatal(pgerrcode.InsufficientPrivilege, "tenantproxy: the user's profile is unknown, so no statement may run")
	}
	var ignored []string
	out, perr := clientSettings(pkt, s.guard.Load(), p, policy.ContextFor(cfg, t).AllowedSchemas(), &ignored)
	if len(ignored) > 0 {
		s.log.Info("startup parameters ignored: they stay the tenant's", zap.String("tenant", t.Name), zap.Strings("params", ignored))
	}
	return out, perr
}

// tenantContext are the settings whose startup values are ignored: they stay the tenant's (and
// standard_conforming_strings stays on).
var tenantContext = map[string]bool{"role": true, "session_authorization": true, "search_path": true, "standard_conforming_strings": true}

// notSettings are the startup parameters that are not settings: the front door handles them itself.
var notSettings = map[string]bool{"user": true, "database": true, "replication": true, "options": true}

// serverSwitches are the server's own command-line switches that options may carry (postgres.c's
// process_postgres_switches), besides -c and --: none of them is a client's to change on a shared backend.
const serverSwitches = "BbCDdEeFfhijklNnOPprSsTtvW"

// clientSettings returns the settings the client asked for at startup, by canonical lower-case name, with
// the value the relay replays, or the FATAL error to give the client. application_name comes from
// fallback_application_name when only that was sent; when neither was, the backend's own (empty, as the
// pool dials without one) is in force, and the relay reports it empty, as PostgreSQL does.
func clientSettings(pkt *startupPacket, g *policy.Guard, profile policy.Profile, allowed []string, ignored *[]string) (map[string]string, *pgerr.Error) {
	type setting struct{ name, value string }
	var list []setting
	if opts, ok := lookup(pkt, "options"); ok {
		fromOptions, perr := parseOptions(opts)
		if perr != nil {
			return nil, perr
		}
		for _, kv := range fromOptions {
			list = append(list, setting{kv[0], kv[1]})
		}
	}
	fallback := ""
	for _, name := range pkt.order {
		lower := strings.ToLower(name)
		if notSettings[lower] {
			continue
		}
		if lower == "fallback_application_name" {
			fallback = pkt.params[name]
			continue
		}
		list = append(list, setting{name, pkt.params[name]}) // after options, which they override, as on PostgreSQL
	}
	out := map[string]string{}
	for _, st := range list {
		if lower, ok := policy.NormalizeSettingName(st.name); ok && (tenantContext[lower] || lower == g.TenantSetting()) {
			*ignored = append(*ignored, st.name)
			continue
		}
		if !policy.IsServerSetting(st.name) {
			return nil, pgerr.Fatal(pgerrcode.UndefinedObject, fmt.Sprintf("unrecognized configuration parameter %q", st.name))
		}
		if lower, _ := policy.NormalizeSettingName(st.name); lower == "client_encoding" && policy.IsClientOnlyEncoding(st.value) {
			return nil, pgerr.Fatal(pgerrcode.InvalidParameterValue, fmt.Sprintf("tenantproxy: client_encoding %q is not supported: its multibyte characters can hide quotes from a SQL parser; use UTF8", st.value))
		}
		a := g.StartupSetting(st.name, st.value, profile, allowed)
		if a.Refused {
			return nil, pgerr.Fatal(a.SQLState, a.Reason)
		}
		for _, e := range a.Effects {
			if e.Kind != policy.EffectSetTracked {
				continue
			}
			v := e.Value
			if e.Name == "client_encoding" {
				v = pgparam.CanonicalEncoding(v)
			}
			out[e.Name] = v
		}
	}
	if _, ok := out["application_name"]; !ok && fallback != "" {
		out["application_name"] = fallback
	}
	return out, nil
}

// lookup returns a startup parameter by its lower-case name, in whatever case the client sent it.
func lookup(pkt *startupPacket, lower string) (string, bool) {
	for _, name := range pkt.order {
		if strings.ToLower(name) == lower {
			return pkt.params[name], true
		}
	}
	return "", false
}

// parseOptions reads the options startup parameter as PostgreSQL does (pg_split_opts, then the -c and --
// switches of process_postgres_switches with ParseLongOption): it returns the name=value pairs in order, the
// dashes of each name turned into underscores.
func parseOptions(opts string) ([][2]string, *pgerr.Error) {
	args := splitOptions(opts)
	var out [][2]string
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if len(arg) < 2 || arg[0] != '-' {
			return nil, pgerr.Fatal(pgerrcode.SyntaxError, fmt.Sprintf("invalid command-line argument for server process: %s", arg))
		}
		sw := arg[1]
		if sw != 'c' && sw != '-' {
			if strings.IndexByte(serverSwitches, sw) >= 0 {
				return nil, pgerr.Fatal(pgerrcode.InsufficientPrivilege, fmt.Sprintf("tenantproxy: startup option -%c is not allowed: only -c name=value and --name=value settings may be given", sw))
			}
			return nil, pgerr.Fatal(pgerrcode.SyntaxError, fmt.Sprintf("invalid command-line argument for server process: %s", arg))
		}
		optarg := arg[2:]
		if optarg == "" && sw == 'c' {
			if i+1 == len(args) {
				return nil, pgerr.Fatal(pgerrcode.SyntaxError, "-c requires a value")
			}
			i++
			optarg = args[i]
		}
		name, value, ok := strings.Cut(optarg, "=")
		if !ok {
			if sw == '-' {
				return nil, pgerr.Fatal(pgerrcode.SyntaxError, fmt.Sprintf("--%s requires a value", optarg))
			}
			return nil, pgerr.Fatal(pgerrcode.SyntaxError, fmt.Sprintf("-c %s requires a value", optarg))
		}
		out = append(out, [2]string{strings.ReplaceAll(name, "-", "_"), value})
	}
	return out, nil
}

// splitOptions splits the options parameter at white space, a backslash taking the next character as it
// is (PostgreSQL's pg_split_opts).
func splitOptions(s string) []string {
	var out []string
	i := 0
	for {
		for i < len(s) && isSpaceByte(s[i]) {
			i++
		}
		if i == len(s) {
			return out
		}
		var b strings.Builder
		for i < len(s) && !isSpaceByte(s[i]) {
			if s[i] == '\\' && i+1 < len(s) {
				i++
			}
			b.WriteByte(s[i])
			i++
		}
		out = append(out, b.String())
	}
}

func isSpaceByte(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}
