package fluentd

import (
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/tinylib/msgp/msgp"
)

// Auth is the shared-key authentication of the Forward protocol (Fluentd's
// <security> section): every connection starts with the server's HELO,
// logferry's PING proving it knows the key (and, when the server asks,
// a user name and password), and the server's PONG proving the server
// knows it too.
type Auth struct {
	// SharedKey turns authentication on; it never leaves the process.
	SharedKey string
	// Username and Password are sent (the password as a salted digest)
	// when the server asks for them.
	Username, Password string
	// Hostname is the name logferry gives itself in PING; the server's
	// must differ (Fluentd refuses a connection to itself). Default the
	// host name of the system.
	Hostname string
}

// enabled reports whether connections are authenticated.
func (a Auth) enabled() bool { return a.SharedKey != "" }

// ErrAuth is wrapped by the errors of a failed handshake: the server
// refused the key or the user, or failed to prove it knows the key.
var ErrAuth = errors.New("authentication failed")

// errNoHelo is wrapped when a server does not start with HELO.
var errNoHelo = errors.New("the server did not send HELO")

// digest returns the hex SHA-512 of the parts, one after the other, as
// the handshake's digests are made.
func digest(parts ...string) string {
	h := sha512.New()
	for _, p := range parts {
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// helo is what a server's HELO says.
type helo struct {
	nonce, userSalt string
}

// handshake authenticates conn, whose messages r reads, before deadline.
func (a Auth) handshake(conn net.Conn, r *msgp.Reader, deadline time.Time) error {
	if err := conn.SetDeadline(deadline); err != nil {
		return err
	}
	h, err := readHelo(r)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("%w (is authentication on at the server?): %w", errNoHelo, err)
		}
		return err
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return fmt.Errorf("salt: %w", err)
	}
	saltHex := hex.EncodeToString(salt)
	ping := msgp.AppendArrayHeader(nil, 6)
	ping = msgp.AppendString(ping, "PING")
	ping = msgp.AppendString(ping, a.Hostname)
	ping = msgp.AppendString(ping, saltHex)
	ping = msgp.AppendString(ping, digest(saltHex, a.Hostname, h.nonce, a.SharedKey))
	if h.userSalt != "" {
		ping = msgp.AppendString(ping, a.Username)
		ping = msgp.AppendString(ping, digest(h.userSalt, a.Username, a.Password))
	} else {
		ping = msgp.AppendString(ping, "")
		ping = msgp.AppendString(ping, "")
	}
	if _, err := conn.Write(ping); err != nil {
		return fmt.Errorf("send PING: %w", err)
	}
	if err := a.readPong(r, saltHex, h.nonce); err != nil {
		return err
	}
	return conn.SetDeadline(time.Time{})
}

// readHelo reads ['HELO', {nonce, auth, keepalive}]. The nonce and the
// user salt are bin in Fluentd, str in some other servers: both do.
func readHelo(r *msgp.Reader) (helo, error) {
	var h helo
	n, err := r.ReadArrayHeader()
	if err != nil {
		return h, fmt.Errorf("%w: %w", errNoHelo, err)
	}
	kind, err := r.ReadString()
	if err != nil || kind != "HELO" || n != 2 {
		return h, fmt.Errorf("%w: got a %d-element message %q", errNoHelo, n, kind)
	}
	if r.IsNil() {
		return h, r.ReadNil()
	}
	fields, err := r.ReadMapHeader()
	if err != nil {
		return h, fmt.Errorf("HELO options: %w", err)
	}
	for range fields {
		key, err := r.ReadString()
		if err != nil {
			return h, fmt.Errorf("HELO options: %w", err)
		}
		switch key {
		case "nonce":
			h.nonce, err = readStrOrBin(r)
		case "auth":
			h.userSalt, err = readStrOrBin(r)
		default:
			err = r.Skip()
		}
		if err != nil {
			return h, fmt.Errorf("HELO %s: %w", key, err)
		}
	}
	return h, nil
}

func readStrOrBin(r *msgp.Reader) (string, error) {
	t, err := r.NextType()
	if err != nil {
		return "", err
	}
	if t == msgp.BinType {
		b, err := r.ReadBytes(nil)
		return string(b), err
	}
	return r.ReadString()
}

// readPong reads ['PONG', ok, reason, hostname, digest] and checks it.
func (a Auth) readPong(r *msgp.Reader, saltHex, nonce string) error {
	n, err := r.ReadArrayHeader()
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		// Fluent Bit closes the connection on a wrong key, with no PONG.
		return fmt.Errorf("%w: the server closed the connection after PING (a wrong shared key?)", ErrAuth)
	}
	if err != nil {
		return fmt.Errorf("read PONG: %w", err)
	}
	kind, err := r.ReadString()
	if err != nil || kind != "PONG" || n != 5 {
		return fmt.Errorf("read PONG: got a %d-element message %q", n, kind)
	}
	ok, err := r.ReadBool()
	if err != nil {
		return fmt.Errorf("read PONG: %w", err)
	}
	var reason, host, sum string
	for _, dst := range []*string{&reason, &host, &sum} {
		if *dst, err = r.ReadString(); err != nil {
			return fmt.Errorf("read PONG: %w", err)
		}
	}
	switch {
	case !ok:
		return fmt.Errorf("%w: the server says %q", ErrAuth, reason)
	case host == a.Hostname:
		return fmt.Errorf("%w: the server has logferry's own host name %q (a loop?)", ErrAuth, host)
	case sum != digest(saltHex, host, nonce, a.SharedKey):
		return fmt.Errorf("%w: the server does not know the shared key (its PONG digest is wrong)", ErrAuth)
	}
	return nil
}
