// Package faultproxy is a TCP proxy for fault tests: it sits on a loopback
// port in front of a real server (receiver, broker) and, per connection or
// on command, passes traffic through, delays it, drops the connection in
// the middle of a request, blackholes it, or resets it after the request
// reached the server but before the answer reached the client (the case
// where a batch is stored and its acknowledgement is lost).
package faultproxy

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Fault is what the proxy does to one connection.
type Fault uint8

const (
	// Pass forwards both ways.
	Pass Fault = iota
	// Delay forwards both ways, each chunk after Faults.Delay.
	Delay
	// DropMidRequest forwards part of what the client sends, then resets
	// both sides.
	DropMidRequest
	// Blackhole accepts and reads but forwards nothing and never answers.
	Blackhole
	// ResetBeforeAnswer forwards the client's bytes, then resets the
	// client as soon as the server starts answering.
	ResetBeforeAnswer
)

func (f Fault) String() string {
	return [...]string{"pass", "delay", "drop-mid-request", "blackhole", "reset-before-answer"}[f]
}

// Faults is the random mix applied to new connections: each probability
// picks that fault for a connection; the rest pass (or are delayed when
// Delay > 0 and the Delay fault is drawn).
type Faults struct {
	DropMidRequest    float64
	Blackhole         float64
	ResetBeforeAnswer float64
	Delayed           float64
	Delay             time.Duration
}

// Proxy forwards 127.0.0.1:<port> to a target address.
type Proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	faults Faults
	forced *Fault
	rng    *rand.Rand
	conns  map[net.Conn]struct{}
	counts [5]int
	closed bool
	quit   chan struct{}

	wg       sync.WaitGroup
	accepted atomic.Int64
}

// New listens on a free loopback port and forwards to target. seed makes
// the random faults repeatable.
func New(target string, seed uint64) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	p := &Proxy{ln: ln, target: target, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), conns: map[net.Conn]struct{}{}, quit: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's listening address (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetFaults sets the random mix for new connections.
func (p *Proxy) SetFaults(f Faults) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = f
	p.forced = nil
}

// Force applies one fault to every new connection (Pass to heal).
func (p *Proxy) Force(f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.forced = &f
}

// ResetAll resets every open connection.
func (p *Proxy) ResetAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		reset(c)
	}
}

// Counts reports how many connections got each fault.
func (p *Proxy) Counts() map[Fault]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := map[Fault]int{}
	for f, n := range p.counts {
		if n > 0 {
			m[Fault(f)] = n
		}
	}
	return m
}

// Close stops listening, resets every connection and waits for them.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.quit)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.ResetAll()
	p.wg.Wait()
	return err
}

func (p *Proxy) pick() Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := Pass
	if p.forced != nil {
		f = *p.forced
	} else {
		x := p.rng.Float64()
		for _, c := range []struct {
			p float64
			f Fault
		}{{p.faults.DropMidRequest, DropMidRequest}, {p.faults.Blackhole, Blackhole}, {p.faults.ResetBeforeAnswer, ResetBeforeAnswer}, {p.faults.Delayed, Delay}} {
			if x < c.p {
				f = c.f
				break
			}
			x -= c.p
		}
	}
	p.counts[f]++
	return f
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrack(c)
			p.serve(c, p.pick())
		}()
	}
}

func (p *Proxy) serve(client net.Conn, f Fault) {
	defer client.Close()
	if f == Blackhole {
		// Read and hold the connection, answering nothing, until the
		// client gives up or the proxy closes.
		io.Copy(io.Discard, client)
		<-p.quit
		return
	}
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		reset(client) // the server is down: the client sees a reset, as it would
		return
	}
	if !p.track(server) {
		server.Close()
		return
	}
	defer p.untrack(server)
	defer server.Close()

	p.mu.Lock()
	delay := p.faults.Delay
	cut := 1 + p.rng.IntN(512) // bytes of the request let through before a drop
	p.mu.Unlock()

	done := make(chan struct{}, 2)
	go func() { // client → server
		defer func() { done <- struct{}{} }()
		switch f {
		case DropMidRequest:
			io.CopyN(server, client, int64(cut))
			reset(server)
			reset(client)
		case Delay:
			copyDelayed(server, client, delay)
		default:
			io.Copy(server, client)
		}
		if tc, ok := server.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}()
	go func() { // server → client
		defer func() { done <- struct{}{} }()
		switch f {
		case ResetBeforeAnswer:
			var b [1]byte
			if n, _ := server.Read(b[:]); n > 0 { // the server has answered
				reset(client)
				reset(server)
			}
		case Delay:
			copyDelayed(client, server, delay)
		default:
			io.Copy(client, server)
		}
		if tc, ok := client.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}()
	<-done
	<-done
}

func copyDelayed(dst io.Writer, src io.Reader, d time.Duration) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			time.Sleep(d)
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// reset closes a connection with RST rather than FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}
