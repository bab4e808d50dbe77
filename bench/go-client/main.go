// Command atls-bench-client is a load generator that shares no code with the
// project: Go's crypto/tls and net/http speak ATLS (docs/protocol.md §3-§5)
// and HTTPS to a benchmark server, so that `npm run bench` can compare its
// own client's figures with an independent client's.
//
// It reads commands on stdin: "mark" starts the measured window, "stop" ends
// it and prints one JSON line {ops, errors, firstError, elapsedMs, cpuUs}.
// With -count N it measures from the start, stops after N operations or at
// the first error, prints the same line and exits (1 on an error).
//
//	atls-bench-client -job atls-req -mode exported -url http://127.0.0.1:8443 -ca ca.pem
//	atls-bench-client -job atls-fresh -mode records -count 20 -conns 1 -url ... -ca ca.pem
package main

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	exporterLabel  = "application-layer-tls"
	flightType     = "application/atls+octet-stream"
	protectedType  = "application/atls-protected"
	flightLenField = "atls-flight-length"
	cookieName     = "atls-session"
	endpointPath   = "/.well-known/atls"
)

type options struct {
	job       string
	mode      string
	url       string
	conns     int
	size      int
	piggyback bool
	count     int64
	tls       *tls.Config
}

func main() {
	var o options
	var caFile string
	flag.StringVar(&o.job, "job", "atls-req", "atls-req | atls-fresh | https-req | https-fresh | http-req")
	flag.StringVar(&o.mode, "mode", "exported", "ATLS mode: exported (architecture b) or records (a)")
	flag.StringVar(&o.url, "url", "", "server base URL (http:// for ATLS and plain HTTP, https:// for HTTPS)")
	flag.StringVar(&caFile, "ca", "", "PEM file of the CA that signed the server certificate")
	flag.IntVar(&o.conns, "conns", 8, "concurrent loops (connections / sessions)")
	flag.IntVar(&o.size, "size", 100, "request body size in bytes")
	flag.BoolVar(&o.piggyback, "piggyback", true, "send the first request with the client's final flight")
	flag.Int64Var(&o.count, "count", 0, "stop after this many operations or at the first error (no stdin commands)")
	tls12 := flag.Bool("tls12", false, "offer TLS 1.2 only (ATLS mode records; Go 1.19 has no Extended Master Secret, which key export needs)")
	flag.Parse()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		fatal(errors.New("no certificate in -ca"))
	}
	o.tls = &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS13}
	if *tls12 {
		o.tls.MinVersion, o.tls.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	}
	r := &run{o: o, finished: make(chan struct{})}
	if o.count > 0 {
		r.mark()
		r.start()
		<-r.finished
		res := r.stop()
		out, _ := json.Marshal(res)
		fmt.Println(string(out))
		if res.Errors > 0 {
			os.Exit(1)
		}
		return
	}
	r.start()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch strings.TrimSpace(in.Text()) {
		case "mark":
			r.mark()
		case "stop":
			out, _ := json.Marshal(r.stop())
			fmt.Println(string(out))
			return
		}
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "atls-bench-client:", err)
	os.Exit(2)
}

// run counts completed operations of all loops inside the measured window.
type run struct {
	o         options
	measuring atomic.Bool
	stopped   atomic.Bool
	ops       atomic.Int64
	errs      atomic.Int64
	firstErr  atomic.Value
	markAt    time.Time
	markCPU   time.Duration
	client    *http.Client
	finished  chan struct{} // closed when -count is reached or an error ends a counted run
	finish    sync.Once
}

type result struct {
	Ops        int64   `json:"ops"`
	Errors     int64   `json:"errors"`
	FirstError string  `json:"firstError,omitempty"`
	ElapsedMs  float64 `json:"elapsedMs"`
	CPUUs      float64 `json:"cpuUs"`
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (r *run) start() {
	t := &http.Transport{
		TLSClientConfig:     r.o.tls,
		MaxIdleConnsPerHost: r.o.conns,
		MaxConnsPerHost:     r.o.conns,
		DisableKeepAlives:   r.o.job == "https-fresh",
	}
	r.client = &http.Client{Transport: t}
	for i := 0; i < r.o.conns; i++ {
		go r.loop()
	}
}

func (r *run) mark() {
	r.markAt = time.Now()
	r.markCPU = cpuTime()
	r.measuring.Store(true)
}

func (r *run) stop() result {
	elapsed := time.Since(r.markAt)
	cpu := cpuTime() - r.markCPU
	r.measuring.Store(false)
	r.stopped.Store(true)
	res := result{Ops: r.ops.Load(), Errors: r.errs.Load(), ElapsedMs: float64(elapsed.Microseconds()) / 1000, CPUUs: float64(cpu.Microseconds())}
	if e, ok := r.firstErr.Load().(string); ok {
		res.FirstError = e
	}
	return res
}

func (r *run) done(measured bool) {
	if measured && r.measuring.Load() {
		if n := r.ops.Add(1); r.o.count > 0 && n >= r.o.count {
			r.end()
		}
	}
}

func (r *run) end() {
	r.finish.Do(func() {
		r.stopped.Store(true)
		close(r.finished)
	})
}

func (r *run) fail(err error) {
	if r.errs.Add(1) == 1 {
		r.firstErr.Store(err.Error())
	}
	if r.o.count > 0 {
		r.end()
	}
	time.Sleep(10 * time.Millisecond)
}

func (r *run) loop() {
	body := bytes.Repeat([]byte{'a'}, r.o.size)
	inner := encodeRequest("POST", "https", "localhost", "/echo", [][2]string{{"content-type", "application/octet-stream"}}, body)
	var s *session
	for !r.stopped.Load() {
		m := r.measuring.Load()
		var err error
		switch r.o.job {
		case "atls-fresh":
			s, err = r.handshake(inner)
		case "atls-req":
			if s == nil {
				if s, err = r.handshake(nil); err != nil {
					break
				}
			}
			err = s.request(inner)
		case "https-req", "https-fresh", "http-req":
			err = r.plain(body)
		default:
			fatal(fmt.Errorf("unknown job %q", r.o.job))
		}
		if err != nil {
			s = nil
			r.fail(err)
			continue
		}
		r.done(m)
	}
}

// plain is one POST /echo over HTTP or HTTPS (a fresh TLS connection each for https-fresh).
func (r *run) plain(body []byte) error {
	req, _ := http.NewRequest("POST", r.o.url+"/echo", bytes.NewReader(body))
	req.Header.Set("content-type", "application/octet-stream")
	res, err := r.client.Do(req)
	if err != nil {
		return err
	}
	got, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return err
	}
	if res.StatusCode != 200 || len(got) != len(body) {
		return fmt.Errorf("server answered %d with %d bytes", res.StatusCode, len(got))
	}
	return nil
}

// pipe is the TLS connection's transport: writes collect the next flight, reads take
// the server's bytes. While the handshake runs, a read of an empty buffer hands the
// collected flight to the driver and blocks until the answer arrives; afterwards it
// returns a temporary error, which crypto/tls passes up without failing the connection.
type pipe struct {
	out      bytes.Buffer
	in       bytes.Buffer
	blocking bool
	wants    chan []byte // the flight, when the handshake needs the server's answer
	answers  chan []byte
}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "no more input" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

func (p *pipe) Read(b []byte) (int, error) {
	if p.in.Len() == 0 {
		if !p.blocking {
			return 0, wouldBlock{}
		}
		p.wants <- p.take()
		a, ok := <-p.answers
		if !ok {
			return 0, io.EOF
		}
		p.in.Write(a)
		if p.in.Len() == 0 {
			return 0, io.EOF
		}
	}
	return p.in.Read(b)
}

func (p *pipe) Write(b []byte) (int, error)      { return p.out.Write(b) }
func (p *pipe) take() []byte                     { f := append([]byte(nil), p.out.Bytes()...); p.out.Reset(); return f }
func (p *pipe) Close() error                     { return nil }
func (p *pipe) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (p *pipe) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (p *pipe) SetDeadline(time.Time) error      { return nil }
func (p *pipe) SetReadDeadline(time.Time) error  { return nil }
func (p *pipe) SetWriteDeadline(time.Time) error { return nil }

// session is one established ATLS session.
type session struct {
	r      *run
	cookie string
	conn   *tls.Conn
	p      *pipe
	// Architecture (b): the exported key block (docs/protocol.md §3) and the send counter.
	seal, open cipher.AEAD
	sealIV     []byte
	openIV     []byte
	seq        uint64
}

// post sends one body to the ATLS endpoint and returns the answer's body and its flight length field.
func (s *session) post(contentType string, body []byte, flightLen int) ([]byte, int, error) {
	req, _ := http.NewRequest("POST", s.r.o.url+endpointPath, bytes.NewReader(body))
	req.Header.Set("content-type", contentType)
	req.Header.Set("accept", contentType)
	if s.cookie != "" {
		req.Header.Set("cookie", cookieName+"="+s.cookie)
	}
	if flightLen >= 0 {
		req.Header.Set(flightLenField, strconv.Itoa(flightLen))
	}
	res, err := s.r.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	got, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return nil, 0, err
	}
	if res.StatusCode != 200 {
		return nil, 0, fmt.Errorf("ATLS endpoint answered %d (%s)", res.StatusCode, res.Header.Get("atls-error"))
	}
	for _, c := range res.Cookies() {
		if c.Name == cookieName {
			s.cookie = c.Value
		}
	}
	n := -1
	if v := res.Header.Get(flightLenField); v != "" {
		if n, err = strconv.Atoi(v); err != nil || n > len(got) {
			return nil, 0, fmt.Errorf("bad %s %q", flightLenField, v)
		}
	}
	return got, n, nil
}

// handshake runs a new session; with a first request it rides on the final flight
// (docs/protocol.md §5.6) and its response is checked.
func (r *run) handshake(first []byte) (*session, error) {
	p := &pipe{blocking: true, wants: make(chan []byte), answers: make(chan []byte)}
	s := &session{r: r, p: p, conn: tls.Client(p, r.o.tls)}
	done := make(chan error, 1)
	go func() { done <- s.conn.Handshake() }()
	for {
		select {
		case flight := <-p.wants:
			answer, _, err := s.post(flightType, flight, -1)
			if err != nil {
				close(p.answers)
				<-done
				return nil, err
			}
			p.answers <- answer
			continue
		case err := <-done:
			if err != nil {
				return nil, err
			}
		}
		break
	}
	p.blocking = false
	if err := s.keys(); err != nil {
		return nil, err
	}
	// TLS 1.3: Handshake returns once the client Finished is written; it is the final flight.
	final := p.take()
	if first == nil || !r.o.piggyback {
		answer, _, err := s.post(flightType, final, -1)
		if err != nil {
			return nil, err
		}
		if r.o.mode == "records" {
			// The session tickets: records of the session, read before the next response's.
			s.p.in.Write(answer)
		}
		if first == nil {
			return s, nil
		}
		return s, s.request(first)
	}
	if r.o.mode == "records" {
		if _, err := s.conn.Write(first); err != nil {
			return nil, err
		}
		answer, _, err := s.post(flightType, append(final, p.take()...), -1)
		if err != nil {
			return nil, err
		}
		return s, s.readRecords(answer, r.o.size)
	}
	msg := s.protect(first)
	answer, n, err := s.post(flightType, append(final, msg...), len(final))
	if err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, errors.New("answer to a piggy-backed request without " + flightLenField)
	}
	return s, s.unprotectResponse(answer[n:], r.o.size)
}

// keys derives the architecture-(b) key block (docs/protocol.md §3) for AES-GCM suites.
func (s *session) keys() error {
	if s.r.o.mode != "exported" {
		return nil
	}
	var keyLen int
	switch s.conn.ConnectionState().CipherSuite {
	case tls.TLS_AES_128_GCM_SHA256:
		keyLen = 16
	case tls.TLS_AES_256_GCM_SHA384:
		keyLen = 32
	default:
		return fmt.Errorf("suite %s has no AEAD this client implements", tls.CipherSuiteName(s.conn.ConnectionState().CipherSuite))
	}
	cs := s.conn.ConnectionState()
	block, err := cs.ExportKeyingMaterial(exporterLabel, nil, 2*keyLen+24)
	if err != nil {
		return err
	}
	mk := func(key []byte) cipher.AEAD {
		b, _ := aes.NewCipher(key)
		g, _ := cipher.NewGCM(b)
		return g
	}
	// client_write_key | server_write_key | client_write_IV | server_write_IV
	s.seal = mk(block[:keyLen])
	s.open = mk(block[keyLen : 2*keyLen])
	s.sealIV = block[2*keyLen : 2*keyLen+12]
	s.openIV = block[2*keyLen+12:]
	return nil
}

func nonce(iv []byte, seq uint64) []byte {
	n := append([]byte(nil), iv...)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	for i := 0; i < 8; i++ {
		n[4+i] ^= b[i]
	}
	return n
}

// protect seals one message (docs/protocol.md §4): flags 001 00 (n-1), minimal sequence number, AEAD with the header as AAD.
func (s *session) protect(plain []byte) []byte {
	seq := s.seq
	s.seq++
	n := 1
	for v := seq >> 8; v > 0; v >>= 8 {
		n++
	}
	hdr := make([]byte, 1+n)
	hdr[0] = 0x20 | byte(n-1)
	for i := 0; i < n; i++ {
		hdr[n-i] = byte(seq >> (8 * i))
	}
	return s.seal.Seal(hdr, nonce(s.sealIV, seq), plain, hdr)
}

func (s *session) unprotect(msg []byte) ([]byte, error) {
	if len(msg) < 2 || msg[0]&0xf8 != 0x20 {
		return nil, errors.New("malformed protected message")
	}
	n := int(msg[0]&7) + 1
	if len(msg) < 1+n+16 {
		return nil, errors.New("short protected message")
	}
	var seq uint64
	for _, b := range msg[1 : 1+n] {
		seq = seq<<8 | uint64(b)
	}
	return s.open.Open(nil, nonce(s.openIV, seq), msg[1+n:], msg[:1+n])
}

func (s *session) unprotectResponse(msg []byte, want int) error {
	plain, err := s.unprotect(msg)
	if err != nil {
		return err
	}
	return checkResponse(plain, want)
}

// readRecords feeds the server's records to the TLS connection and reads the whole inner response.
func (s *session) readRecords(answer []byte, want int) error {
	s.p.in.Write(answer)
	var plain []byte
	buf := make([]byte, 16384+256)
	for {
		n, err := s.conn.Read(buf)
		plain = append(plain, buf[:n]...)
		if err != nil {
			if _, ok := err.(wouldBlock); ok {
				break
			}
			return err
		}
	}
	return checkResponse(plain, want)
}

// request sends one inner request over the established session.
func (s *session) request(inner []byte) error {
	if s.r.o.mode == "records" {
		if _, err := s.conn.Write(inner); err != nil {
			return err
		}
		answer, _, err := s.post(flightType, s.p.take(), -1)
		if err != nil {
			return err
		}
		return s.readRecords(answer, s.r.o.size)
	}
	answer, _, err := s.post(protectedType, s.protect(inner), -1)
	if err != nil {
		return err
	}
	return s.unprotectResponse(answer, s.r.o.size)
}

// Binary HTTP (RFC 9292), known-length form only.

func appendVarint(b []byte, v uint64) []byte {
	switch {
	case v < 1<<6:
		return append(b, byte(v))
	case v < 1<<14:
		return binary.BigEndian.AppendUint16(b, uint16(v)|0x4000)
	case v < 1<<30:
		return binary.BigEndian.AppendUint32(b, uint32(v)|0x80000000)
	default:
		return binary.BigEndian.AppendUint64(b, v|0xc000000000000000)
	}
}

func readVarint(b []byte) (uint64, []byte, error) {
	if len(b) == 0 {
		return 0, nil, errors.New("bhttp: truncated")
	}
	n := 1 << (b[0] >> 6)
	if len(b) < n {
		return 0, nil, errors.New("bhttp: truncated varint")
	}
	v := uint64(b[0] & 0x3f)
	for _, c := range b[1:n] {
		v = v<<8 | uint64(c)
	}
	return v, b[n:], nil
}

func appendString(b []byte, s []byte) []byte { return append(appendVarint(b, uint64(len(s))), s...) }

func encodeRequest(method, scheme, authority, path string, fields [][2]string, content []byte) []byte {
	b := []byte{0} // known-length request
	for _, s := range []string{method, scheme, authority, path} {
		b = appendString(b, []byte(s))
	}
	var f []byte
	for _, kv := range fields {
		f = appendString(appendString(f, []byte(kv[0])), []byte(kv[1]))
	}
	b = appendString(b, f)
	b = appendString(b, content)
	return append(b, 0) // no trailers
}

// checkResponse decodes a known-length response (RFC 9292 §3) and wants a 200 with `want` content bytes.
func checkResponse(msg []byte, want int) error {
	v, rest, err := readVarint(msg)
	if err != nil || v != 1 {
		return errors.New("bhttp: not a known-length response")
	}
	for {
		var status, n uint64
		if status, rest, err = readVarint(rest); err != nil {
			return err
		}
		if n, rest, err = readVarint(rest); err != nil || uint64(len(rest)) < n {
			return errors.New("bhttp: bad field section")
		}
		rest = rest[n:]
		if status >= 200 {
			if n, rest, err = readVarint(rest); err != nil || uint64(len(rest)) < n {
				return errors.New("bhttp: bad content")
			}
			if status != 200 || int(n) != want {
				return fmt.Errorf("inner response %d with %d bytes", status, n)
			}
			return nil
		}
	}
}
