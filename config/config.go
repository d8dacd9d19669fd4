// Package config loads and validates tenantproxy's config.toml. The key names are a contract with
// operators, tests and the referee benchmark: keys are added, never renamed. Unknown keys and invalid
// values are errors that name the key.
package config

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/tenantproxy/tenantproxy/internal/pgident"
)

// PoolMode is [pool] mode: when a backend goes back to the pool (pgbouncer's pool_mode).
type PoolMode string

// Pool modes.
const (
	ModeTransaction PoolMode = "transaction"
	ModeSession     PoolMode = "session"
)

// Auth methods.
const (
	AuthTrust    = "trust"
	AuthPassword = "password"
	AuthMD5      = "md5"
	AuthSCRAM    = "scram-sha-256"
)

// TLS modes for client connections.
const (
	TLSDisable = "disable"
	TLSAllow   = "allow"
	TLSRequire = "require"
)

// Profile is a [[users]] profile: what the statement guard lets the user's sessions do.
type Profile string

// User profiles.
const (
	ProfileApp      Profile = "app"
	ProfileReadonly Profile = "readonly"
	ProfileOwner    Profile = "owner"
	// ProfileAnalytics reads the cross-tenant views of the analytics schema, and nothing else, read-only.
	ProfileAnalytics Profile = "analytics"
)

// Analytics is the name an analytics user connects to (database "analytics", or user@analytics), the
// schema holding the cross-tenant views, and so a name no tenant may have.
const Analytics = "analytics"

// StatsSchema holds the tenant-scoped replacements of the statistics views that init closes to tenants.
const StatsSchema = "tenant_stats"

// AnalyticsRole is the NOLOGIN role the session of an analytics user runs as.
const AnalyticsRole = "tenantproxy_analytics"

// PoolModes are the valid [pool] modes.
var PoolModes = []PoolMode{ModeTransaction, ModeSession}

// Profiles are the valid [[users]] profiles.
var Profiles = []Profile{ProfileApp, ProfileReadonly, ProfileOwner, ProfileAnalytics}

// Valid reports whether m is one of PoolModes.
func (m PoolMode) Valid() bool { return slices.Contains(PoolModes, m) }

// Valid reports whether p is one of Profiles.
func (p Profile) Valid() bool { return slices.Contains(Profiles, p) }

func names[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

// Tenant catalogs.
const (
	CatalogConfig   = "config"
	CatalogDatabase = "database"
)

// Duration is a time.Duration written in TOML as a string such as "5s" or "250ms".
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (use forms like \"5s\", \"250ms\", \"1h\")", string(b))
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration back as a string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Config is the whole of config.toml.
type Config struct {
	Listen     Listen     `toml:"listen"`
	Backend    Backend    `toml:"backend"`
	Pool       Pool       `toml:"pool"`
	Auth       Auth       `toml:"auth"`
	Tenancy    Tenancy    `toml:"tenancy"`
	Tenants    []Tenant   `toml:"tenants"`
	Users      []User     `toml:"users"`
	Metrics    Metrics    `toml:"metrics"`
	Log        Log        `toml:"log"`
	Admin      Admin      `toml:"admin"`
	Migrations Migrations `toml:"migrations"`
	// AdminConsole, Audit and Peers: see admin_console.go.
	AdminConsole AdminConsole `toml:"admin_console"`
	Audit        Audit        `toml:"audit"`
	Peers        Peers        `toml:"peers"`

	// Path is the file the config was loaded from; empty for one built in code.
	Path string `toml:"-"`
}

// Listen is where clients connect and how.
type Listen struct {
	Addr        string `toml:"addr"`
	TLSCertFile string `toml:"tls_cert_file"`
	TLSKeyFile  string `toml:"tls_key_file"`
	// TLSMode is "disable" (SSLRequest answered 'N'), "allow" (TLS when asked and configured) or
	// "require" (plain connections are refused).
	TLSMode string `toml:"tls_mode"`
	// StartupTimeout bounds the time from accept to the end of authentication.
	StartupTimeout Duration `toml:"startup_timeout"`
	// MaxMessageSize caps one protocol message from a client, in bytes.
	MaxMessageSize int `toml:"max_message_size"`
	// RelayThreads is how many OS threads relay messages, each with its own share of clients and
	// backends under the one pool_size; 0 means one per two cores, at most 4 and at most pool_size/4.
	RelayThreads int `toml:"relay_threads"`
	// ReusePort sets SO_REUSEPORT on the listener, so a new process can listen on the same address
	// before the old one drains (rolling restart, docs/operations.md).
	ReusePort bool `toml:"reuse_port"`
}

// Backend is the shared PostgreSQL server and the pool role every backend connection logs in as.
type Backend struct {
	Host        string `toml:"host"`
	Port        int    `toml:"port"`
	Database    string `toml:"database"`
	User        string `toml:"user"`
	Password    string `toml:"password"`
	PasswordEnv string `toml:"password_env"`
	// PoolSize caps the backend connections shared by all tenants.
	PoolSize       int      `toml:"pool_size"`
	ConnectTimeout Duration `toml:"connect_timeout"`
	MaxLifetime    Duration `toml:"max_lifetime"`
	IdleTimeout    Duration `toml:"idle_timeout"`
	// QueryTimeout closes a backend that sends nothing for this long while a client waits on it
	// (0: no limit). It guards against a server that stops answering.
	QueryTimeout Duration `toml:"query_timeout"`
}

// Pool is how client sessions share backends.
type Pool struct {
	Mode          PoolMode `toml:"mode"`
	MaxClientConn int      `toml:"max_client_conn"`
	WaitTimeout   Duration `toml:"wait_timeout"`
	// MaxPreparedStatements is the per-backend limit of server-side prepared statements kept by the proxy.
	MaxPreparedStatements int `toml:"max_prepared_statements"`
	// MaxClientPreparedStatements and MaxClientPreparedBytes bound one client's named prepared statements
	// (count and total text size) kept by the proxy.
	MaxClientPreparedStatements int `toml:"max_client_prepared_statements"`
	MaxClientPreparedBytes      int `toml:"max_client_prepared_bytes"`
	// TenantMaxBackends caps the backends one tenant may hold at once (0: pool_size), so a noisy tenant
	// cannot starve the others.
	TenantMaxBackends int `toml:"tenant_max_backends"`
	// TenantMaxClients caps the clients one tenant may have connected at once (0: no cap beyond
	// max_client_conn); a tenant's own [[tenants]] max_clients overrides it.
	TenantMaxClients int `toml:"tenant_max_clients"`
	// ShutdownTimeout is how long SIGTERM waits for open transactions before closing clients.
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
}

// Auth is how clients authenticate to the proxy.
type Auth struct {
	Method string `toml:"method"`
	// AllowCleartextWithoutTLS lets method "password" ask for a cleartext password on a plain connection.
	AllowCleartextWithoutTLS bool `toml:"allow_cleartext_without_tls"`
	// FailureDelay is the pause before a failed authentication is answered.
	FailureDelay Duration `toml:"failure_delay"`
	// Users is where users live: "config" ([[users]]) or "database" (the catalog; docs/users.md).
	Users string `toml:"users"`
	// UserCacheTTL is how long a user looked up in the catalog is kept without a change notification.
	UserCacheTTL Duration `toml:"user_cache_ttl"`
}

// Tenancy is how a connection becomes a tenant and what a tenant's session gets.
type Tenancy struct {
	// Resolve lists the ways to find the tenant, tried in order: "user" (alice@acme) and "database".
	Resolve       []string `toml:"resolve"`
	UserSeparator string   `toml:"user_separator"`
	// Role is the role set for a tenant's session; {tenant} and {schema} expand.
	Role string `toml:"role"`
	// SearchPath is the search_path of a tenant's session; {tenant} and {schema} expand.
	SearchPath []string `toml:"search_path"`
	// Setting is the custom setting that carries the tenant's name (for RLS policies).
	Setting string `toml:"setting"`
	// RequireHardening makes serve refuse to start when the doctor checks fail.
	RequireHardening *bool `toml:"require_hardening"`
	// Catalog is "config" (the [[tenants]] list) or "database" (the tenantproxy catalog schema).
	Catalog string `toml:"catalog"`
	// TripwireSampleRate is the fraction of leases after which the backend's identity is verified.
	TripwireSampleRate float64 `toml:"tripwire_sample_rate"`
}

// Tenant is one statically configured tenant.
type Tenant struct {
	Name   string `toml:"name"`
	Schema string `toml:"schema"`
	// Suspended tenants get no new sessions.
	Suspended bool `toml:"suspended"`
	// MaxClients, MaxBackends, Weight and StatementTimeout are the tenant's own limits (0: the [pool]
	// defaults). They change at runtime (SIGHUP, the admin console) without dropping anyone.
	// With catalog = "database" they are columns of tenantproxy.tenants, changed by `tenantproxy tenant set`.
	MaxClients  int `toml:"max_clients" db:"-"`
	MaxBackends int `toml:"max_backends" db:"-"`
	// Weight is the tenant's share of freed backends while tenants wait (default 1).
	Weight int `toml:"weight" db:"-"`
	// StatementTimeout applies to the tenant's transactions unless a client sets a lower one.
	StatementTimeout Duration `toml:"statement_timeout" db:"-"`
	// MigrationGroup orders `migrate up` rollouts (groups in name order, before ungrouped tenants) and
	// names the tenant in tenant-specific migration headers. Read by name also with catalog = "database";
	// never part of the database catalog (db:"-").
	MigrationGroup string `toml:"migration_group" db:"-"`
	// Allow limits the tenant's clients to these address ranges ("10.0.0.0/8"; empty: any address); with
	// catalog = "database" it is the catalog's allow column (`tenant set NAME allow=...`).
	Allow []string `toml:"allow" db:"-"`
}

// User is one client identity.
type User struct {
	Name string `toml:"name"`
	// Password is plain text, a SCRAM-SHA-256 verifier or an md5 hash ("md5" + 32 hex digits).
	Password string   `toml:"password"`
	Tenants  []string `toml:"tenants"`
	// Profile is "app" (default), "readonly", "owner" or "analytics" (the cross-tenant views only; its
	// Tenants are ignored).
	Profile Profile `toml:"profile"`
	// Allow limits the user's connections to these address ranges ("10.0.0.0/8"; empty: any address).
	Allow []string `toml:"allow"`
}

// Metrics is the Prometheus endpoint.
type Metrics struct {
	Addr string `toml:"addr"`
	// TenantSeries bounds the tenant label: the busiest TenantSeries tenants get series of their own,
	// the rest are summed under tenant="_other" (default 100).
	TenantSeries int `toml:"tenant_series"`
	// SchemaStatsInterval is how often the per-schema collector runs its one catalog query (size, tables,
	// tuples, scans of each tenant schema); 0 turns it off (the default).
	SchemaStatsInterval Duration `toml:"schema_stats_interval"`
}

// Log is the structured logger's setup.
type Log struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
	// AuditStatementText puts the full text of a refused statement in its audit record; by default the
	// record carries only the statement's fingerprint (tenants' data can hide in literals).
	AuditStatementText bool `toml:"audit_statement_text"`
}

// Admin is the role the lifecycle commands (init, tenant, migrate, doctor) use. Client traffic never does.
type Admin struct {
	User        string `toml:"user"`
	Password    string `toml:"password"`
	PasswordEnv string `toml:"password_env"`
	// Database to connect to for admin work; defaults to [backend] database.
	Database string `toml:"database"`
	// OwnerRole owns every tenant object; migrations run as it. Defaults to "tenantproxy_owner".
	OwnerRole string `toml:"owner_role"`
}

// Migrations is where versioned SQL files live.
type Migrations struct {
	Dir       string `toml:"dir"`
	SharedDir string `toml:"shared_dir"`
	// LockTimeout bounds how long a migration statement waits for a lock (default 3s), so that it never
	// queues a tenant's traffic behind it for longer; a migration that is not granted its lock is retried.
	LockTimeout Duration `toml:"lock_timeout"`
	// StatementTimeout bounds one migration statement (default 10m).
	StatementTimeout Duration `toml:"statement_timeout"`
	// Retries is how often a tenant's migration is retried, with backoff, when its lock is not granted
	// (default 5; 0 means no retry).
	Retries *int `toml:"retries"`
}

// Load reads, decodes and validates the file at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(string(b))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c.Path = path
	return c, nil
}

// Parse decodes and validates a config from TOML text.
func Parse(text string) (*Config, error) {
	c := &Config{}
	md, err := toml.Decode(text, c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%s", pe.ErrorWithPosition())
		}
		return nil, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		sort.Strings(keys)
		return nil, fmt.Errorf("unknown key %s", strings.Join(keys, ", "))
	}
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Defaults of the limits that the relay also needs when it is built without a Config (its unit tests):
// package session must take these rather than write the numbers again.
const (
	DefaultMaxMessageSize              = 64 << 20 // [listen] max_message_size
	DefaultMaxClientConn               = 10000    // [pool] max_client_conn
	DefaultMaxPreparedStatements       = 500      // [pool] max_prepared_statements
	DefaultMaxClientPreparedStatements = 10000    // [pool] max_client_prepared_statements
	DefaultMaxClientPreparedBytes      = 32 << 20 // [pool] max_client_prepared_bytes
)

// applyDefaults fills in every key left out; it is the one place defaults are written.
func (c *Config) applyDefaults() {
	d := func(v *Duration, def time.Duration) {
		if v.Duration == 0 {
			v.Duration = def
		}
	}
	s := func(v *string, def string) {
		if *v == "" {
			*v = def
		}
	}
	i := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	s(&c.Listen.Addr, "127.0.0.1:6432")
	s(&c.Listen.TLSMode, TLSAllow)
	d(&c.Listen.StartupTimeout, 15*time.Second)
	i(&c.Listen.MaxMessageSize, DefaultMaxMessageSize)
	s(&c.Backend.Host, "127.0.0.1")
	i(&c.Backend.Port, 5432)
	s(&c.Backend.Database, "postgres")
	s(&c.Backend.User, "tenantproxy_pool")
	i(&c.Backend.PoolSize, 20)
	d(&c.Backend.ConnectTimeout, 5*time.Second)
	d(&c.Backend.MaxLifetime, time.Hour)
	d(&c.Backend.IdleTimeout, 10*time.Minute)
	if c.Pool.Mode == "" {
		c.Pool.Mode = ModeTransaction
	}
	i(&c.Pool.MaxClientConn, DefaultMaxClientConn)
	d(&c.Pool.WaitTimeout, 10*time.Second)
	i(&c.Pool.MaxPreparedStatements, DefaultMaxPreparedStatements)
	i(&c.Pool.MaxClientPreparedStatements, DefaultMaxClientPreparedStatements)
	i(&c.Pool.MaxClientPreparedBytes, DefaultMaxClientPreparedBytes)
	d(&c.Pool.ShutdownTimeout, 30*time.Second)
	s(&c.Auth.Method, AuthSCRAM)
	d(&c.Auth.FailureDelay, 250*time.Millisecond)
	d(&c.Migrations.LockTimeout, 3*time.Second)
	d(&c.Migrations.StatementTimeout, 10*time.Minute)
	if c.Migrations.Retries == nil {
		c.Migrations.Retries = new(int)
		*c.Migrations.Retries = 5
	}
	if len(c.Tenancy.Resolve) == 0 {
		c.Tenancy.Resolve = []string{"user", "database"}
	}
	s(&c.Tenancy.UserSeparator, "@")
	// Derived from the schema, so that opaque schema names make opaque role names.
	s(&c.Tenancy.Role, "tenant_{schema}")
	if len(c.Tenancy.SearchPath) == 0 {
		// tenant_stats before pg_catalog: a tool that reads pg_stat_user_tables unqualified (Metabase's sync)
		// gets the tenant's own statistics instead of a permission error.
		c.Tenancy.SearchPath = []string{"{schema}", StatsSchema, "pg_catalog", "public"}
	}
	s(&c.Tenancy.Setting, "tenantproxy.tenant")
	if c.Tenancy.RequireHardening == nil {
		t := true
		c.Tenancy.RequireHardening = &t
	}
	s(&c.Tenancy.Catalog, CatalogConfig)
	for k := range c.Tenants {
		s(&c.Tenants[k].Schema, c.Tenants[k].Name)
	}
	for k := range c.Users {
		if c.Users[k].Profile == "" {
			c.Users[k].Profile = ProfileApp
		}
	}
	s(&c.Log.Level, "info")
	s(&c.Log.Format, "json")
	s(&c.Admin.User, "postgres")
	s(&c.Admin.OwnerRole, "tenantproxy_owner")
	s(&c.Admin.Database, c.Backend.Database)
	i(&c.Metrics.TenantSeries, 100)
}

// Validate checks every value; the error names the offending key.
func (c *Config) Validate() error {
	var errs []string
	bad := func(key, format string, a ...any) {
		errs = append(errs, key+": "+fmt.Sprintf(format, a...))
	}
	oneOf := func(key, v string, allowed ...string) {
		for _, a := range allowed {
			if v == a {
				return
			}
		}
		bad(key, "must be one of %s, got %q", strings.Join(quoteAll(allowed), ", "), v)
	}
	oneOf("[listen] tls_mode", c.Listen.TLSMode, TLSDisable, TLSAllow, TLSRequire)
	if (c.Listen.TLSCertFile == "") != (c.Listen.TLSKeyFile == "") {
		bad("[listen] tls_cert_file", "tls_cert_file and tls_key_file must be set together")
	}
	if c.Listen.TLSMode == TLSRequire && c.Listen.TLSCertFile == "" {
		bad("[listen] tls_mode", "\"require\" needs tls_cert_file and tls_key_file")
	}
	if c.Listen.RelayThreads < 0 || c.Listen.RelayThreads > 64 {
		bad("[listen] relay_threads", "must be 0 (auto) to 64, got %d", c.Listen.RelayThreads)
	}
	if c.Listen.MaxMessageSize < 1024 {
		bad("[listen] max_message_size", "must be at least 1024 bytes, got %d", c.Listen.MaxMessageSize)
	}
	if c.Backend.Port < 1 || c.Backend.Port > 65535 {
		bad("[backend] port", "must be 1..65535, got %d", c.Backend.Port)
	}
	if c.Backend.PoolSize < 1 {
		bad("[backend] pool_size", "must be at least 1, got %d", c.Backend.PoolSize)
	}
	if c.Backend.PasswordEnv != "" && c.Backend.Password != "" {
		bad("[backend] password_env", "set password or password_env, not both")
	}
	oneOf("[pool] mode", string(c.Pool.Mode), names(PoolModes)...)
	if c.Pool.MaxClientConn < 1 {
		bad("[pool] max_client_conn", "must be at least 1, got %d", c.Pool.MaxClientConn)
	}
	if c.Pool.WaitTimeout.Duration < 0 {
		bad("[pool] wait_timeout", "must not be negative")
	}
	if c.Pool.MaxPreparedStatements < 1 {
		bad("[pool] max_prepared_statements", "must be at least 1, got %d", c.Pool.MaxPreparedStatements)
	}
	if c.Pool.MaxClientPreparedStatements < 1 {
		bad("[pool] max_client_prepared_statements", "must be at least 1, got %d", c.Pool.MaxClientPreparedStatements)
	}
	if c.Pool.MaxClientPreparedBytes < 1024 {
		bad("[pool] max_client_prepared_bytes", "must be at least 1024, got %d", c.Pool.MaxClientPreparedBytes)
	}
	if c.Pool.TenantMaxBackends < 0 {
		bad("[pool] tenant_max_backends", "must not be negative")
	}
	if c.Pool.TenantMaxClients < 0 {
		bad("[pool] tenant_max_clients", "must not be negative")
	}
	oneOf("[auth] method", c.Auth.Method, AuthTrust, AuthPassword, AuthMD5, AuthSCRAM)
	for _, r := range c.Tenancy.Resolve {
		oneOf("[tenancy] resolve", r, "user", "database")
	}
	if c.Tenancy.UserSeparator == "" || strings.ContainsAny(c.Tenancy.UserSeparator, " \x00") {
		bad("[tenancy] user_separator", "must be a non-empty string without spaces")
	}
	if !strings.Contains(c.Tenancy.Role, "{tenant}") && !strings.Contains(c.Tenancy.Role, "{schema}") {
		bad("[tenancy] role", "must contain {tenant} or {schema}, so each tenant has its own role; got %q", c.Tenancy.Role)
	}
	if !validSettingName(c.Tenancy.Setting) {
		bad("[tenancy] setting", "must be a custom setting name like \"app.tenant\", got %q", c.Tenancy.Setting)
	}
	oneOf("[tenancy] catalog", c.Tenancy.Catalog, CatalogConfig, CatalogDatabase)
	if c.Tenancy.TripwireSampleRate < 0 || c.Tenancy.TripwireSampleRate > 1 {
		bad("[tenancy] tripwire_sample_rate", "must be between 0 and 1, got %v", c.Tenancy.TripwireSampleRate)
	}
	if c.Migrations.LockTimeout.Duration < 0 {
		bad("[migrations] lock_timeout", "must be positive, got %v", c.Migrations.LockTimeout.Duration)
	}
	if c.Migrations.StatementTimeout.Duration < 0 {
		bad("[migrations] statement_timeout", "must be positive, got %v", c.Migrations.StatementTimeout.Duration)
	}
	if c.Migrations.Retries != nil && *c.Migrations.Retries < 0 {
		bad("[migrations] retries", "must be 0 or more, got %d", *c.Migrations.Retries)
	}
	if c.Metrics.TenantSeries < 0 {
		bad("[metrics] tenant_series", "must be 0 or more, got %d", c.Metrics.TenantSeries)
	}
	if c.Metrics.SchemaStatsInterval.Duration < 0 {
		bad("[metrics] schema_stats_interval", "must not be negative")
	}
	seenT := map[string]bool{}
	for k, t := range c.Tenants {
		key := fmt.Sprintf("[[tenants]] #%d name", k+1)
		if err := pgident.ValidateName(t.Name); err != nil {
			bad(key, "%v", err)
		}
		if seenT[t.Name] {
			bad(key, "tenant %q is listed twice", t.Name)
		}
		if t.Name == Analytics {
			bad(key, "%q is reserved for the analytics user", t.Name)
		}
		seenT[t.Name] = true
		if err := pgident.ValidateName(t.Schema); err != nil {
			bad(fmt.Sprintf("[[tenants]] %s schema", t.Name), "%v", err)
		}
		for _, l := range []struct {
			key string
			v   int
		}{{"max_clients", t.MaxClients}, {"max_backends", t.MaxBackends}, {"weight", t.Weight}} {
			if l.v < 0 {
				bad(fmt.Sprintf("[[tenants]] %s %s", t.Name, l.key), "must not be negative, got %d", l.v)
			}
		}
		if t.StatementTimeout.Duration < 0 {
			bad(fmt.Sprintf("[[tenants]] %s statement_timeout", t.Name), "must not be negative")
		}
		if t.Schema == Analytics {
			bad(fmt.Sprintf("[[tenants]] %s schema", t.Name), "%q is the schema of the cross-tenant views", t.Schema)
		}
	}
	seenU := map[string]bool{}
	for k, u := range c.Users {
		key := fmt.Sprintf("[[users]] #%d", k+1)
		if u.Name == "" {
			bad(key+" name", "is empty")
		}
		if seenU[u.Name] {
			bad(key+" name", "user %q is listed twice", u.Name)
		}
		seenU[u.Name] = true
		oneOf(fmt.Sprintf("[[users]] %s profile", u.Name), string(u.Profile), names(Profiles)...)
		if c.Auth.Method != AuthTrust && u.Password == "" {
			bad(fmt.Sprintf("[[users]] %s password", u.Name), "is empty, and [auth] method is %q", c.Auth.Method)
		}
		if c.Tenancy.Catalog == CatalogConfig {
			for _, t := range u.Tenants {
				if !seenT[t] {
					bad(fmt.Sprintf("[[users]] %s tenants", u.Name), "tenant %q is not in [[tenants]]", t)
				}
			}
		}
	}
	c.validateOperations(bad)
	c.validateUsers(bad)
	oneOf("[log] level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf("[log] format", c.Log.Format, "json", "console")
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// BackendPassword returns the pool role's password from the config or the named environment variable.
func (c *Config) BackendPassword() string {
	if c.Backend.PasswordEnv != "" {
		return os.Getenv(c.Backend.PasswordEnv)
	}
	return c.Backend.Password
}

// AdminPassword returns the admin role's password from the config or the named environment variable.
func (c *Config) AdminPassword() string {
	if c.Admin.PasswordEnv != "" {
		return os.Getenv(c.Admin.PasswordEnv)
	}
	return c.Admin.Password
}

// RequiresHardening reports whether serve must refuse to start on a failed doctor check.
func (c *Config) RequiresHardening() bool {
	return c.Tenancy.RequireHardening == nil || *c.Tenancy.RequireHardening
}

// TenantRole expands [tenancy] role for a tenant.
func (c *Config) TenantRole(tenant, schema string) string {
	return Expand(c.Tenancy.Role, tenant, schema)
}

// TenantSearchPath expands [tenancy] search_path for a tenant.
func (c *Config) TenantSearchPath(tenant, schema string) []string {
	out := make([]string, len(c.Tenancy.SearchPath))
	for i, p := range c.Tenancy.SearchPath {
		out[i] = Expand(p, tenant, schema)
	}
	return out
}

// Expand replaces {tenant} and {schema} in s.
func Expand(s, tenant, schema string) string {
	return strings.NewReplacer("{tenant}", tenant, "{schema}", schema).Replace(s)
}

func validSettingName(s string) bool {
	dot := strings.IndexByte(s, '.')
	if dot <= 0 || dot == len(s)-1 {
		return false
	}
	for _, r := range s {
		if !(r == '.' || r == '_' || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9')) {
			return false
		}
	}
	return true
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}
