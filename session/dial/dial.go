// Package dial opens the relay's backend connections: it logs in as the pool role with pgconn and hands
// the hijacked file descriptor to package session. It lives beside session rather than in routing, which
// decides who the tenant is and knows nothing of backends.
package dial

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/netfd"
	"github.com/tenantproxy/tenantproxy/session"
)

// Dialer opens backend connections to the shared server as the one pool role: pgconn does the login
// (any auth method the server asks for), then the connection is hijacked and its file descriptor handed
// to the relay loop.
type Dialer struct {
	pg      *pgconn.Config
	network string
	addr    string
}

// NewDialer builds a Dialer from [backend].
func NewDialer(c *config.Config) (*Dialer, error) {
	pg, err := pgconn.ParseConfig("sslmode=disable")
	if err != nil {
		return nil, err
	}
	pg.Host = c.Backend.Host
	pg.Port = uint16(c.Backend.Port)
	pg.Database = c.Backend.Database
	pg.User = c.Backend.User
	pg.Password = c.BackendPassword()
	pg.TLSConfig = nil
	pg.Fallbacks = nil
	pg.ConnectTimeout = c.Backend.ConnectTimeout.Duration
	// No application_name: RESET ALL on a lease then gives a client that set none PostgreSQL's default,
	// empty, as on a direct connection (pool backends are told apart by their user, the pool role).
	pg.RuntimeParams = map[string]string{"client_encoding": "UTF8"}
	d := &Dialer{pg: pg, network: "tcp", addr: net.JoinHostPort(c.Backend.Host, strconv.Itoa(c.Backend.Port))}
	if len(c.Backend.Host) > 0 && c.Backend.Host[0] == '/' {
		d.network = "unix"
		d.addr = fmt.Sprintf("%s/.s.PGSQL.%d", c.Backend.Host, c.Backend.Port)
	}
	return d, nil
}

// Dial logs in and returns the raw connection.
func (d *Dialer) Dial(ctx context.Context) (*session.BackendConn, error) {
	conn, err := pgconn.ConnectConfig(ctx, d.pg)
	if err != nil {
		return nil, err
	}
	hc, err := conn.Hijack()
	if err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	if hc.TxStatus != 'I' {
		hc.Conn.Close()
		return nil, errors.New("dial: new backend connection is not idle")
	}
	fd, err := netfd.Dup(hc.Conn)
	hc.Conn.Close()
	if err != nil {
		return nil, err
	}
	return &session.BackendConn{Fd: fd, PID: hc.PID, Secret: hc.SecretKey, Params: hc.ParameterStatuses}, nil
}

// Cancel sends a CancelRequest for the backend with pid and secret and waits until the server has read
// it (the server closes the connection after acting on it).
func (d *Dialer) Cancel(ctx context.Context, pid uint32, secret []byte) error {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, d.network, d.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(5 * time.Second))
	}
	msg := make([]byte, 0, 12+len(secret))
	msg = binary.BigEndian.AppendUint32(msg, uint32(12+len(secret)))
	msg = binary.BigEndian.AppendUint32(msg, 80877102)
	msg = binary.BigEndian.AppendUint32(msg, pid)
	msg = append(msg, secret...)
	if _, err := c.Write(msg); err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, c)
	return err
}
