package faultproxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// echoServer answers each connection's whole input back, once the client
// has finished sending, and records what it received.
type echoServer struct {
	ln       net.Listener
	mu       sync.Mutex
	received [][]byte
}

func startEcho(t *testing.T) *echoServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c)
				e.mu.Lock()
				e.received = append(e.received, b)
				e.mu.Unlock()
				c.Write(b)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return e
}

func (e *echoServer) got() [][]byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([][]byte(nil), e.received...)
}

// roundTrip sends msg, half-closes, and reads the answer.
func roundTrip(t *testing.T, addr string, msg []byte) ([]byte, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	c.(*net.TCPConn).CloseWrite()
	return io.ReadAll(c)
}

func newProxy(t *testing.T, target string) *Proxy {
	p, err := New(target, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func waitFor(t *testing.T, cond func() bool) {
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFaults(t *testing.T) {
	msg := bytes.Repeat([]byte("0123456789"), 200) // 2000 bytes
	e := startEcho(t)
	p := newProxy(t, e.ln.Addr().String())

	if got, err := roundTrip(t, p.Addr(), msg); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("pass: got %d bytes, %v; want the echo", len(got), err)
	}

	p.Force(DropMidRequest)
	got, err := roundTrip(t, p.Addr(), msg)
	if err == nil && len(got) == len(msg) {
		t.Errorf("drop-mid-request: the client got its whole answer")
	}
	waitFor(t, func() bool { return len(e.got()) == 2 })
	if n := len(e.got()[1]); n == 0 || n >= len(msg) {
		t.Errorf("drop-mid-request: server received %d of %d bytes; want part", n, len(msg))
	}

	p.Force(ResetBeforeAnswer)
	got, err = roundTrip(t, p.Addr(), msg)
	if len(got) != 0 || err == nil {
		t.Errorf("reset-before-answer: client got %d bytes, err %v; want a reset and nothing", len(got), err)
	}
	waitFor(t, func() bool { return len(e.got()) == 3 })
	if !bytes.Equal(e.got()[2], msg) {
		t.Errorf("reset-before-answer: the server did not get the whole request")
	}

	p.Force(Blackhole)
	_, err = roundTrip(t, p.Addr(), msg)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("blackhole: err = %v; want a timeout", err)
	}
	if len(e.got()) != 3 {
		t.Errorf("blackhole: the server saw a connection")
	}

	p.SetFaults(Faults{Delayed: 1, Delay: 50 * time.Millisecond})
	start := time.Now()
	if got, err := roundTrip(t, p.Addr(), msg); err != nil || !bytes.Equal(got, msg) || time.Since(start) < 100*time.Millisecond {
		t.Errorf("delay: got %d bytes, %v after %v; want the echo after >= 100ms", len(got), err, time.Since(start))
	}
	c := p.Counts()
	if c[Pass] != 1 || c[DropMidRequest] != 1 || c[ResetBeforeAnswer] != 1 || c[Blackhole] != 1 || c[Delay] != 1 {
		t.Errorf("counts = %v; want one of each", c)
	}
}

func TestRandomMixAndServerDown(t *testing.T) {
	e := startEcho(t)
	p := newProxy(t, e.ln.Addr().String())
	p.SetFaults(Faults{DropMidRequest: 0.25, ResetBeforeAnswer: 0.25})
	ok := 0
	for range 40 {
		if got, err := roundTrip(t, p.Addr(), []byte("hello")); err == nil && string(got) == "hello" {
			ok++
		}
	}
	c := p.Counts()
	if c[Pass] != ok || c[DropMidRequest] == 0 || c[ResetBeforeAnswer] == 0 || c[Pass]+c[DropMidRequest]+c[ResetBeforeAnswer] != 40 {
		t.Errorf("40 connections: %d echoed, counts %v; want a mix whose passes are exactly the echoes", ok, c)
	}
	e.ln.Close()
	p.Force(Pass)
	if got, err := roundTrip(t, p.Addr(), []byte("x")); err == nil && len(got) > 0 {
		t.Errorf("server down: got %q; want an error", got)
	}
}
