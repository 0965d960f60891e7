package fluentdtest

import (
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"time"

	"github.com/tinylib/msgp/msgp"
)

// authenticate runs the server side of the shared-key handshake on a new
// connection: HELO, then the client's PING, checked, then PONG. It
// reports whether the client may go on; on failure the PONG says why and
// the connection is to be closed.
func (s *Server) authenticate(conn net.Conn, r *msgp.Reader) bool {
	sec := s.cfg.Security
	self := sec.Hostname
	if self == "" {
		self = "fluentdtest"
	}
	nonce := randomBytes()
	var userSalt []byte
	helo := msgp.AppendArrayHeader(nil, 2)
	helo = msgp.AppendString(helo, "HELO")
	if sec.FluentBit {
		userSalt = randomBytes()
		helo = msgp.AppendMapHeader(helo, 2)
		helo = msgp.AppendString(helo, "nonce")
		helo = msgp.AppendStringFromBytes(helo, nonce)
		helo = msgp.AppendString(helo, "auth")
		helo = msgp.AppendStringFromBytes(helo, userSalt)
	} else {
		helo = msgp.AppendMapHeader(helo, 3)
		helo = msgp.AppendString(helo, "nonce")
		helo = msgp.AppendBytes(helo, nonce) // bin, as Fluentd sends it
		helo = msgp.AppendString(helo, "auth")
		if len(sec.Users) > 0 {
			userSalt = randomBytes()
			helo = msgp.AppendBytes(helo, userSalt)
		} else {
			helo = msgp.AppendString(helo, "")
		}
		helo = msgp.AppendString(helo, "keepalive")
		helo = msgp.AppendBool(helo, true)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	defer conn.SetDeadline(time.Time{})
	if _, err := conn.Write(helo); err != nil {
		return false
	}

	var raw msgp.Raw
	if err := raw.DecodeMsg(r); err != nil {
		if !errors.Is(err, io.EOF) {
			s.refuse(conn, "no PING: "+err.Error())
		}
		return false // a client that connects and leaves, such as a probe without a key
	}
	ping, ok := decodePing(raw)
	if !ok {
		s.refuse(conn, "invalid ping message")
		return false
	}
	if ping.digest != sum(ping.salt, ping.hostname, string(nonce), sec.SharedKey) {
		if sec.FluentBit {
			s.recordRefusal("shared_key mismatch") // and no PONG
			return false
		}
		s.refuse(conn, "shared_key mismatch")
		return false
	}
	if len(sec.Users) > 0 {
		pw, known := sec.Users[ping.username]
		if !known || ping.password != sum(string(userSalt), ping.username, pw) {
			s.refuse(conn, "username/password mismatch")
			return false
		}
	}
	pong := msgp.AppendArrayHeader(nil, 5)
	pong = msgp.AppendString(pong, "PONG")
	pong = msgp.AppendBool(pong, true)
	pong = msgp.AppendString(pong, "")
	pong = msgp.AppendString(pong, self)
	pong = msgp.AppendString(pong, sum(ping.salt, self, string(nonce), sec.SharedKey))
	if _, err := conn.Write(pong); err != nil {
		return false
	}
	s.mu.Lock()
	s.authOK++
	s.mu.Unlock()
	return true
}

// refuse answers a failed PING with PONG false and the reason, and
// records it.
func (s *Server) refuse(conn net.Conn, reason string) {
	s.recordRefusal(reason)
	pong := msgp.AppendArrayHeader(nil, 5)
	pong = msgp.AppendString(pong, "PONG")
	pong = msgp.AppendBool(pong, false)
	pong = msgp.AppendString(pong, reason)
	pong = msgp.AppendString(pong, "")
	pong = msgp.AppendString(pong, "")
	conn.Write(pong)
}

// recordRefusal records why a handshake failed.
func (s *Server) recordRefusal(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.authFailed = append(s.authFailed, reason)
}

// ping is a client's PING.
type ping struct {
	hostname, salt, digest, username, password string
}

// decodePing decodes ['PING', hostname, salt, digest, username, password],
// every element a str.
func decodePing(raw []byte) (ping, bool) {
	var p ping
	n, rest, err := msgp.ReadArrayHeaderBytes(raw)
	if err != nil || n != 6 {
		return p, false
	}
	var kind string
	for _, dst := range []*string{&kind, &p.hostname, &p.salt, &p.digest, &p.username, &p.password} {
		if *dst, rest, err = msgp.ReadStringBytes(rest); err != nil {
			return p, false
		}
	}
	return p, kind == "PING"
}

// sum is the handshake's digest: hex SHA-512 of the parts in order.
func sum(parts ...string) string {
	h := sha512.New()
	for _, p := range parts {
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func randomBytes() []byte {
	b := make([]byte, 16)
	rand.Read(b)
	return b
}
