package pgtest

import (
	"context"
	"os"
	"testing"
	"time"
)

func TestClusterStartsServesAndIsRemovedOnStop(t *testing.T) {
	for _, auth := range []string{"trust", "scram-sha-256"} {
		t.Run(auth, func(t *testing.T) {
			c, err := Start(Options{Auth: auth, Password: "s3cret"})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			conn, err := c.Connect(ctx, "postgres")
			if err != nil {
				t.Fatal(err)
			}
			var one int
			if err := conn.QueryRow(ctx, "select 1").Scan(&one); err != nil || one != 1 {
				t.Fatalf("select 1: %v %v", one, err)
			}
			conn.Close(ctx)
			if err := c.Stop(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
				t.Fatalf("cluster dir %s still exists after Stop", c.Dir)
			}
		})
	}
}

func TestClusterRestartKeepsData(t *testing.T) {
	c := New(t, Options{})
	c.MustExec(t, "postgres", "create table kept(x int); insert into kept values (7)")
	if err := c.StopServer("immediate"); err != nil {
		t.Fatal(err)
	}
	if err := c.StartServer(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var x int
	if err := conn.QueryRow(ctx, "select x from kept").Scan(&x); err != nil || x != 7 {
		t.Fatalf("after restart: %v %v", x, err)
	}
}
