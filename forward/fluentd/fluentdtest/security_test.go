package fluentdtest

import (
	"net"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"
)

// heloFields reads a HELO and returns its nonce and user salt: bin as
// Fluentd sends them, str as Fluent Bit does.
func heloFields(t *testing.T, r *msgp.Reader, fluentBit bool) (nonce, userSalt string) {
	t.Helper()
	if n, err := r.ReadArrayHeader(); err != nil || n != 2 {
		t.Fatalf("HELO: %d elements, %v", n, err)
	}
	if kind, err := r.ReadString(); err != nil || kind != "HELO" {
		t.Fatalf("HELO: %q, %v", kind, err)
	}
	opts := map[string]any{}
	if err := r.ReadMapStrIntf(opts); err != nil {
		t.Fatalf("HELO options: %v", err)
	}
	if fluentBit {
		nonce, _ = opts["nonce"].(string)
		userSalt, _ = opts["auth"].(string)
		if len(nonce) != 16 || len(userSalt) != 16 || len(opts) != 2 {
			t.Fatalf("Fluent Bit's HELO options %#v, want a str nonce and salt of 16 bytes", opts)
		}
		return nonce, userSalt
	}
	nonceBin, ok := opts["nonce"].([]byte)
	if !ok || len(nonceBin) != 16 {
		t.Fatalf("HELO nonce %#v, want 16 bytes of bin", opts["nonce"])
	}
	if opts["keepalive"] != true {
		t.Errorf("HELO keepalive %#v", opts["keepalive"])
	}
	switch a := opts["auth"].(type) {
	case []byte:
		userSalt = string(a)
	case string:
		if a != "" {
			t.Errorf("HELO auth %q: a str salt", a)
		}
	default:
		t.Errorf("HELO auth %#v", a)
	}
	return string(nonceBin), userSalt
}

// readPong reads a PONG.
func readPong(t *testing.T, r *msgp.Reader) (ok bool, reason, host, digest string) {
	t.Helper()
	if n, err := r.ReadArrayHeader(); err != nil || n != 5 {
		t.Fatalf("PONG: %d elements, %v", n, err)
	}
	var kind string
	var err error
	if kind, err = r.ReadString(); err != nil || kind != "PONG" {
		t.Fatalf("PONG: %q, %v", kind, err)
	}
	if ok, err = r.ReadBool(); err != nil {
		t.Fatal(err)
	}
	for _, dst := range []*string{&reason, &host, &digest} {
		if *dst, err = r.ReadString(); err != nil {
			t.Fatal(err)
		}
	}
	return ok, reason, host, digest
}

func TestSecurity(t *testing.T) {
	const key, salt, client = "s3cret", "0123456789abcdef0123456789abcdef", "client-host"
	request := arr(str("app"), integer(1), kv(str("log"), str("x")))
	tests := []struct {
		name string
		// first is what the client sends after HELO, built from its fields.
		first      func(nonce, userSalt string) []byte
		users      map[string]string
		fluentBit  bool
		wantReason string // "" when it must pass
	}{
		{name: "Fluent Bit, right key", fluentBit: true, first: func(nonce, userSalt string) []byte {
			return arr(str("PING"), str(client), str(salt), str(sum(salt, client, nonce, key)), str(""), str(sum(userSalt, "", "")))
		}},
		{name: "Fluent Bit, wrong key: no PONG", fluentBit: true, wantReason: "shared_key mismatch", first: func(nonce, _ string) []byte {
			return arr(str("PING"), str(client), str(salt), str(sum(salt, client, nonce, "guess")), str(""), str(""))
		}},
		{name: "right key", first: func(nonce, _ string) []byte {
			return arr(str("PING"), str(client), str(salt), str(sum(salt, client, nonce, key)), str(""), str(""))
		}},
		{name: "wrong key", wantReason: "shared_key mismatch", first: func(nonce, _ string) []byte {
			return arr(str("PING"), str(client), str(salt), str(sum(salt, client, nonce, "guess")), str(""), str(""))
		}},
		{name: "digest without the nonce", wantReason: "shared_key mismatch", first: func(string, string) []byte {
			return arr(str("PING"), str(client), str(salt), str(sum(salt, client, key)), str(""), str(""))
		}},
		{name: "digest of another host name", wantReason: "shared_key mismatch", first: func(nonce, _ string) []byte {
			return arr(str("PING"), str(client), str(salt), str(sum(salt, "other", nonce, key)), str(""), str(""))
		}},
		{name: "missing PING", wantReason: "invalid ping message", first: func(string, string) []byte { return request }},
		{name: "PING of 4 elements", wantReason: "invalid ping message", first: func(nonce, _ string) []byte {
			return arr(str("PING"), str(client), str(salt), str(sum(salt, client, nonce, key)))
		}},
		{name: "user and password", users: map[string]string{"alice": "pw"}, first: func(nonce, userSalt string) []byte {
			return arr(str("PING"), str(client), str(salt), str(sum(salt, client, nonce, key)), str("alice"), str(sum(userSalt, "alice", "pw")))
		}},
		{name: "wrong password", users: map[string]string{"alice": "pw"}, wantReason: "username/password mismatch", first: func(nonce, userSalt string) []byte {
			return arr(str("PING"), str(client), str(salt), str(sum(salt, client, nonce, key)), str("alice"), str(sum(userSalt, "alice", "guess")))
		}},
		{name: "no user", users: map[string]string{"alice": "pw"}, wantReason: "username/password mismatch", first: func(nonce, _ string) []byte {
			return arr(str("PING"), str(client), str(salt), str(sum(salt, client, nonce, key)), str(""), str(""))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := NewServer(t, Config{Security: &Security{SharedKey: key, Hostname: "aggregator", Users: tc.users, FluentBit: tc.fluentBit}})
			conn, err := net.Dial("tcp", srv.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			r := msgp.NewReader(conn)
			nonce, userSalt := heloFields(t, r, tc.fluentBit)
			if (userSalt != "") != (tc.users != nil || tc.fluentBit) {
				t.Errorf("HELO user salt %q with users %v", userSalt, tc.users)
			}
			if _, err := conn.Write(tc.first(nonce, userSalt)); err != nil {
				t.Fatal(err)
			}
			if tc.fluentBit && tc.wantReason != "" {
				if _, err := r.ReadArrayHeader(); err == nil {
					t.Error("Fluent Bit's refusal sent something")
				}
				if got := srv.AuthFailures(); len(got) != 1 || got[0] != tc.wantReason {
					t.Errorf("AuthFailures %q", got)
				}
				return
			}
			ok, reason, host, digest := readPong(t, r)
			if tc.wantReason != "" {
				if ok || reason != tc.wantReason || host != "" || digest != "" {
					t.Errorf("PONG %v %q %q %q, want a refusal: %q", ok, reason, host, digest, tc.wantReason)
				}
				if _, err := r.ReadArrayHeader(); err == nil {
					t.Error("the connection stayed open after a refusal")
				}
				if got := srv.AuthFailures(); len(got) != 1 || got[0] != tc.wantReason {
					t.Errorf("AuthFailures %q", got)
				}
				if len(srv.Requests()) != 0 || srv.Authenticated() != 0 {
					t.Errorf("%d requests, %d authenticated after a refusal", len(srv.Requests()), srv.Authenticated())
				}
				return
			}
			if !ok || reason != "" || host != "aggregator" || digest != sum(salt, "aggregator", nonce, key) {
				t.Fatalf("PONG %v %q %q %q", ok, reason, host, digest)
			}
			if _, err := conn.Write(request); err != nil {
				t.Fatal(err)
			}
			if evs := srv.WaitEvents(1, 5*time.Second); len(evs) != 1 {
				t.Fatalf("%d events after the handshake", len(evs))
			}
			if srv.Authenticated() != 1 || len(srv.AuthFailures()) != 0 {
				t.Errorf("authenticated %d, failures %q", srv.Authenticated(), srv.AuthFailures())
			}
		})
	}
}
