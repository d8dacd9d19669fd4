package admin

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/tenantproxy/tenantproxy/audit"
)

// DatabaseNames are the virtual databases that open the console.
var DatabaseNames = []string{"pgbouncer", "tenantproxy"}

// IsConsoleDatabase reports whether a startup packet's database opens the console.
func IsConsoleDatabase(name string) bool {
	for _, n := range DatabaseNames {
		if name == n {
			return true
		}
	}
	return false
}

// Role is what a console user may do.
type Role int

// Roles.
const (
	// RoleNone: not a console user; refused with 28000.
	RoleNone Role = iota
	// RoleStats: SHOW only ([admin_console] stats_users).
	RoleStats
	// RoleAdmin: SHOW and every control command ([admin_console] admin_users).
	RoleAdmin
)

// Console serves admin console connections. Its methods are safe from any goroutine.
type Console struct {
	src     Source
	log     *zap.Logger
	version string

	users atomic.Pointer[map[string]Role]

	ctx    context.Context
	cancel context.CancelFunc
}

// New builds a console over src; version is what clients see as server_version.
func New(src Source, version string, log *zap.Logger) *Console {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Console{src: src, log: log, version: version, ctx: ctx, cancel: cancel}
	c.SetUsers(nil, nil)
	return c
}

// SetUsers replaces the console's users: admins may do everything, stats users only SHOW. A user in
// both lists is an admin.
func (c *Console) SetUsers(admins, stats []string) {
	m := make(map[string]Role, len(admins)+len(stats))
	for _, u := range stats {
		m[u] = RoleStats
	}
	for _, u := range admins {
		m[u] = RoleAdmin
	}
	c.users.Store(&m)
}

// RoleOf returns what user may do in the console.
func (c *Console) RoleOf(user string) Role { return (*c.users.Load())[user] }

// Permits reports whether an authenticated user may open the console.
func (c *Console) Permits(user string) bool { return c.RoleOf(user) != RoleNone }

// Close ends the commands in progress (a WAIT_CLOSE, a PAUSE waiting for clients): their Control
// calls see a cancelled context.
func (c *Console) Close() {
	c.cancel()
}

// Refuse tells a client that is not a console user that it may not connect, as pgbouncer does after
// authentication, and closes nothing: the caller closes conn.
func Refuse(conn io.Writer, user string) {
	e := &pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: pgerrcode.InvalidAuthorizationSpecification,
		Message: fmt.Sprintf("tenantproxy: user %q is not allowed to open the admin console", user)}
	if b, err := e.Encode(nil); err == nil {
		conn.Write(b)
	}
}

// session is one console connection.
type session struct {
	c    *Console
	be   *pgproto3.Backend
	user string
	addr string
	role Role
	log  *zap.Logger
}

// Serve runs the console on conn, whose client has authenticated as user and been sent
// AuthenticationOk. It returns when the client leaves, breaks the protocol, or conn is closed; it does
// not close conn.
func (c *Console) Serve(conn net.Conn, user, addr string) {
	role := c.RoleOf(user)
	if role == RoleNone {
		Refuse(conn, user)
		return
	}
	be := pgproto3.NewBackend(conn, conn)
	be.SetMaxBodyLen(1 << 20)
	s := &session{c: c, be: be, user: user, addr: addr, role: role, log: c.log.With(zap.String("user", user), zap.String("addr", addr))}
	audit.Log.Connect(audit.Conn{Tenant: DatabaseNames[0], User: user, Addr: addr})
	defer audit.Log.Disconnect(audit.Conn{Tenant: DatabaseNames[0], User: user, Addr: addr}, "")
	var key [8]byte
	rand.Read(key[:])
	for _, p := range [][2]string{
		{"server_version", c.version}, {"server_encoding", "UTF8"}, {"client_encoding", "UTF8"},
		{"DateStyle", "ISO"}, {"TimeZone", "GMT"}, {"standard_conforming_strings", "on"},
		{"integer_datetimes", "on"}, {"application_name", ""}, {"is_superuser", "off"},
	} {
		be.Send(&pgproto3.ParameterStatus{Name: p[0], Value: p[1]})
	}
	be.Send(&pgproto3.BackendKeyData{ProcessID: binary.BigEndian.Uint32(key[:4]), SecretKey: key[4:]})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if be.Flush() != nil {
		return
	}
	for {
		msg, err := be.Receive()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, net.ErrClosed) {
				s.log.Info("admin console: bad message", zap.Error(err))
				s.fail(pgerrcode.ProtocolViolation, "tenantproxy: invalid message for admin console")
			}
			return
		}
		switch m := msg.(type) {
		case *pgproto3.Query:
			s.query(m.String)
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			if be.Flush() != nil {
				return
			}
		case *pgproto3.Terminate:
			return
		case *pgproto3.Parse, *pgproto3.Bind, *pgproto3.Execute, *pgproto3.Describe, *pgproto3.Sync, *pgproto3.Close:
			s.fail(pgerrcode.ProtocolViolation, "extended query protocol not supported by admin console")
			return
		default:
			s.fail(pgerrcode.ProtocolViolation, fmt.Sprintf("unsupported packet type for admin console: %T", msg))
			return
		}
	}
}

// fail sends an error and ReadyForQuery before the console drops the client (pgbouncer does the same).
func (s *session) fail(code, msg string) {
	s.be.Send(&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: msg})
	s.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	s.be.Flush()
}

// query runs one Query message's commands in order; the first error ends it.
func (s *session) query(q string) {
	stmts := splitStatements(q)
	if len(stmts) == 0 {
		s.be.Send(&pgproto3.EmptyQueryResponse{})
		return
	}
	if len(stmts) > maxStatements {
		s.sendError(Errorf(pgerrcode.ProgramLimitExceeded, "tenantproxy: at most %d commands per query", maxStatements))
		return
	}
	for _, text := range stmts {
		if err := s.exec(parseStatement(text)); err != nil {
			s.sendError(err)
			return
		}
	}
}

func (s *session) sendError(e *Error) {
	s.be.Send(&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: e.Code, Message: e.Message})
}

// pgbouncer's console errors are all 08P01.
func consoleError(format string, a ...any) *Error {
	return Errorf(pgerrcode.ProtocolViolation, format, a...)
}

func syntaxError(st statement) *Error {
	return consoleError("invalid command '%s', use SHOW HELP;", st.text)
}

var errAdminNeeded = consoleError("admin access needed")

// controlOps are the commands that change something: admin_users only.
var controlOps = map[string]Op{
	"pause": OpPause, "resume": OpResume, "disable": OpDisable, "enable": OpEnable, "kill": OpKill,
	"kill_client": OpKillClient, "reconnect": OpReconnect, "wait_close": OpWaitClose, "reload": OpReload,
	"shutdown": OpShutdown,
}

func (s *session) exec(st statement) *Error {
	if st.invalid {
		return syntaxError(st)
	}
	if st.bad {
		return consoleError("bad arguments")
	}
	switch st.cmd {
	case "show", "select":
		return s.show(st)
	case "set":
		return s.set(st)
	}
	op, ok := controlOps[st.cmd]
	if !ok {
		return syntaxError(st)
	}
	cmd := Command{Op: op, Tenant: st.arg, User: s.user}
	switch op {
	case OpReload:
		if st.arg != "" {
			return syntaxError(st)
		}
	case OpShutdown:
		cmd.Tenant = ""
		switch {
		case st.arg == "":
		case strings.EqualFold(st.arg, "wait_for_clients"):
			cmd.WaitForClients = true
		default:
			return syntaxError(st)
		}
	case OpKillClient:
		cmd.Tenant = ""
	}
	// The permission check comes before the Source sees the command, for every control command:
	// pgbouncer once shipped a control command that a non-admin console user could run.
	if s.role != RoleAdmin {
		s.audit(st, errAdminNeeded)
		return errAdminNeeded
	}
	switch op {
	case OpKillClient:
		id, err := strconv.ParseInt(st.arg, 10, 64)
		if err != nil || id < 0 {
			return consoleError("invalid client pointer supplied")
		}
		cmd.ClientID = id
	case OpDisable, OpEnable:
		if st.arg == "" {
			return consoleError("a database is required")
		}
	}
	if IsConsoleDatabase(cmd.Tenant) {
		verb := map[Op]string{OpPause: "pause", OpResume: "resume", OpDisable: "disable", OpEnable: "disable", OpKill: "kill", OpReconnect: "reconnect", OpWaitClose: "wait in"}[op]
		return consoleError("cannot %s admin db: %s", verb, cmd.Tenant)
	}
	err := s.control(cmd)
	s.audit(st, err)
	if err != nil {
		return err
	}
	s.be.Send(&pgproto3.CommandComplete{CommandTag: []byte(string(op))})
	return nil
}

func (s *session) control(cmd Command) *Error {
	s.log.Info("admin console command", zap.String("op", string(cmd.Op)), zap.String("tenant", cmd.Tenant))
	if err := s.c.src.Control(s.c.ctx, cmd); err != nil {
		return asError(err)
	}
	return nil
}

func (s *session) audit(st statement, err *Error) {
	ev := audit.Admin{User: s.user, Addr: s.addr, Tenant: st.arg, Command: st.text}
	if err != nil {
		ev.SQLSTATE, ev.Error = err.Code, err.Message
	}
	audit.Log.AdminCommand(ev)
}

func (s *session) show(st statement) *Error {
	what := strings.ToLower(st.arg)
	if name, value, ok := fakeParam(st.arg); ok {
		r := &result{cols: cols("s", name)}
		r.add(value)
		s.send(r, "SHOW")
		return nil
	}
	if what == "help" {
		s.be.Send(&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000", Message: "Console usage", Detail: helpText})
		s.be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SHOW")})
		return nil
	}
	sh, ok := shows[what]
	if !ok || st.cmd == "select" && what == "" {
		return syntaxError(st)
	}
	ctx, cancel := context.WithTimeout(s.c.ctx, 10*time.Second)
	defer cancel()
	snap, err := s.c.src.Snapshot(ctx)
	if err != nil {
		return asError(err)
	}
	if sh.relay && snap.RelayErr != nil {
		return asError(snap.RelayErr)
	}
	r := &result{cols: sh.cols}
	sh.fill(r, snap)
	s.send(r, "SHOW")
	return nil
}

func (s *session) send(r *result, tag string) {
	for _, m := range r.messages() {
		s.be.Send(m)
	}
	s.be.Send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
}

// set is SET key = value: pgbouncer's ignored driver settings for anyone, the rest for admins.
func (s *session) set(st statement) *Error {
	if _, _, ok := fakeParam(st.key); ok {
		s.be.Send(&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000", Message: "SET ignored"})
		s.be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SET")})
		return nil
	}
	if s.role != RoleAdmin {
		s.audit(st, errAdminNeeded)
		return errAdminNeeded
	}
	cmd := Command{Op: OpSet, Key: st.key, Value: st.value, User: s.user}
	if i := strings.IndexByte(st.key, '.'); i > 0 {
		if _, ok := tenantLimits[st.key[i+1:]]; ok {
			cmd.Tenant, cmd.Key = st.key[:i], st.key[i+1:]
		}
	}
	err := s.control(cmd)
	s.audit(statement{text: st.text, arg: cmd.Tenant}, err)
	if err != nil {
		return err
	}
	s.be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SET " + st.key + "=" + st.value)})
	return nil
}

// tenantLimits are the per-tenant settings SET <tenant>.<limit> changes.
var tenantLimits = map[string]bool{"max_clients": true, "max_backends": true, "weight": true, "statement_timeout": true}

// NoSuchDatabase is pgbouncer's error for a control command naming a tenant that does not exist.
func NoSuchDatabase(name string) *Error { return consoleError("no such database: %s", name) }
