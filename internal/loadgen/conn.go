package loadgen

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"
)

// connTransport is one virtual client's HTTP/1.1 keep-alive connection,
// as a browser or a relying party's back end keeps one: a request at a
// time, written and read by the goroutine that sends it, with
// net/http's own request writer and response reader.
//
// net/http's Transport hands every request to two goroutines of the
// connection's (a writer and a reader) and back. On two cores that the
// load generator shares with nhsid and PostgreSQL, those hand-offs were
// about a third of the load generator's CPU for client_credentials
// (docs/performance.md, round 13): CPU the server under test could not
// use. Anything but plain http goes to the fallback transport.
//
// It is not safe for concurrent use: each virtual client has its own.
type connTransport struct {
	fallback http.RoundTripper
	dialer   net.Dialer
	timeout  time.Duration // per request, when its context has no earlier deadline

	conn   net.Conn
	addr   string
	br     *bufio.Reader
	bw     *bufio.Writer
	body   *connBody // the last reply's body until it is read to its end
	idleAt time.Time // when the last reply was read
	broken bool      // the connection must not carry another request
}

// maxIdle is how long a connection may sit unused before the next request
// opens a new one instead: well under nhsid's idle timeout (120 s), so a
// request never races the server closing the connection.
const maxIdle = 10 * time.Second

func newConnTransport(fallback http.RoundTripper) *connTransport {
	return &connTransport{fallback: fallback, dialer: net.Dialer{Timeout: 5 * time.Second}, timeout: requestTimeout}
}

// RoundTrip implements http.RoundTripper.
func (t *connTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" {
		return t.fallback.RoundTrip(req)
	}
	addr := req.URL.Host
	if req.URL.Port() == "" {
		addr = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	if err := t.settle(); err != nil || t.addr != addr || time.Since(t.idleAt) > maxIdle {
		t.Close()
	}
	if t.conn == nil {
		c, err := t.dialer.DialContext(req.Context(), "tcp", addr)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		t.conn, t.addr, t.broken = c, addr, false
		t.br, t.bw = bufio.NewReaderSize(c, 16<<10), bufio.NewWriterSize(c, 8<<10)
	}
	// The transport's timeout is the connection's deadline (http.Client's
	// own Timeout would cost a goroutine and a timer per request with a
	// transport it does not know, so clients of this one leave it unset).
	// The context's end (the end of a run, or its deadline) interrupts a
	// read or write through AfterFunc, so that a request cut short always
	// reports the context's error.
	ctx := req.Context()
	conn := t.conn
	_ = conn.SetDeadline(time.Now().Add(t.timeout))
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	resp, err := t.exchange(req)
	if !stop() || err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		t.Close()
		return nil, err
	}
	t.idleAt = time.Now()
	t.body = &connBody{t: t, r: resp.Body}
	resp.Body = t.body
	if resp.Close {
		t.broken = true
	}
	return resp, nil
}

func (t *connTransport) exchange(req *http.Request) (*http.Response, error) {
	if err := req.Write(t.bw); err != nil {
		return nil, err
	}
	if err := t.bw.Flush(); err != nil {
		return nil, err
	}
	return http.ReadResponse(t.br, req)
}

// settle makes the connection ready for the next request: it reads what
// is left of the last reply's body (a caller that closed it early).
func (t *connTransport) settle() error {
	b := t.body
	t.body = nil
	if t.broken {
		return errors.New("loadgen: connection closed by the server")
	}
	if b == nil || b.done {
		return nil
	}
	const maxRest = 1 << 20
	n, err := io.Copy(io.Discard, io.LimitReader(b.r, maxRest+1))
	if err == nil && n > maxRest {
		err = errors.New("loadgen: reply body over 1 MiB")
	}
	return err
}

// Close closes the connection; the next request opens a new one.
func (t *connTransport) Close() {
	if t.conn != nil {
		_ = t.conn.Close()
	}
	t.conn, t.br, t.bw, t.body, t.broken = nil, nil, nil, nil, false
}

// connBody is a reply's body: the connection is free for the next
// request once the body has been read to its end.
type connBody struct {
	t    *connTransport
	r    io.ReadCloser
	done bool
}

func (b *connBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.done = true
		b.t.idleAt = time.Now()
	}
	return n, err
}

func (b *connBody) Close() error { return nil }

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}
