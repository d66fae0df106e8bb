package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// OpError is a failed request, classified for the error table.
type OpError struct {
	Step   string // e.g. "token", "login/finish"
	Status int    // HTTP status; 0 for a transport error
	Code   string // OAuth/API error code, when the reply had one
	Err    error  // transport or decoding error
	Body   string // start of the reply, for diagnosis
}

func (e *OpError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("%s: %v", e.Step, e.Err)
	}
	if e.Err != nil {
		return fmt.Sprintf("%s: status %d %s: %v: %s", e.Step, e.Status, e.Code, e.Err, e.Body)
	}
	return fmt.Sprintf("%s: status %d %s: %s", e.Step, e.Status, e.Code, e.Body)
}

func (e *OpError) Unwrap() error { return e.Err }

// Kind is the error's key in the summary's error table.
func (e *OpError) Kind() string {
	switch {
	case e.Status == 0 && errors.Is(e.Err, context.DeadlineExceeded):
		return e.Step + ": timeout"
	case e.Status == 0:
		return e.Step + ": transport"
	case e.Code != "":
		return fmt.Sprintf("%s: %d %s", e.Step, e.Status, e.Code)
	case e.Err != nil:
		return fmt.Sprintf("%s: %d bad reply", e.Step, e.Status)
	default:
		return fmt.Sprintf("%s: %d", e.Step, e.Status)
	}
}

// ErrorKind classifies any error for the summary.
func ErrorKind(err error) string {
	var oe *OpError
	if errors.As(err, &oe) {
		return oe.Kind()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return "other"
}

// newTransport is shared by all virtual clients: keep-alive connections to
// one loopback host, as many as the concurrency.
func newTransport(conns int) *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns * 2,
		MaxConnsPerHost:     0,
		IdleConnTimeout:     90 * time.Second,
	}
}

// requestTimeout bounds one request.
const requestTimeout = 30 * time.Second

// apiClient sends with rt and follows no redirects.
func apiClient(rt http.RoundTripper) *http.Client {
	c := &http.Client{Transport: rt, Timeout: requestTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if _, ok := rt.(*connTransport); ok {
		c.Timeout = 0 // the transport applies it (connTransport)
	}
	return c
}

// browserClient is one user agent: cookie jar, no automatic redirects.
func browserClient(rt http.RoundTripper) *http.Client {
	c := apiClient(rt)
	c.Jar, _ = cookiejar.New(nil)
	return c
}

// deviceCookie ends the name of nhsid's device cookie (which may carry a
// __Host- prefix): what a returning browser presents to the risk engine.
const deviceCookie = "nhsid_device"

// userBrowser is u's browser for one sign-in: a fresh cookie jar, so no
// session and a full sign-in, holding only the device cookie u's browser
// kept from its last sign-in (none with Options.NewDevices).
func (c *vclient) userBrowser(u *User) *http.Client {
	b := browserClient(c.rt)
	if !c.sh.newDevices && u.BrowserDevice != nil {
		b.Jar.SetCookies(c.sh.issuer, []*http.Cookie{{Name: u.BrowserDevice.Name, Value: u.BrowserDevice.Value}})
	}
	return b
}

// keepDevice remembers the device cookie b holds after u's sign-in.
func (c *vclient) keepDevice(u *User, b *http.Client) {
	for _, ck := range b.Jar.Cookies(c.sh.issuer) {
		if strings.HasSuffix(ck.Name, deviceCookie) {
			u.BrowserDevice = &BrowserCookie{Name: ck.Name, Value: ck.Value}
			return
		}
	}
}

// stepTimes is one virtual client's request times by step (login/begin,
// token(code), …), from the request's start to the end of its reply, and
// the replies with an error status. A virtual client runs one operation
// at a time, so it needs no lock.
type stepTimes struct {
	d    map[string][]time.Duration
	errs map[string]int
}

func newStepTimes() *stepTimes {
	return &stepTimes{d: map[string][]time.Duration{}, errs: map[string]int{}}
}

type stepTimesKey struct{}

// withStepTimes returns ctx carrying t: do records the requests made
// with the returned context (or one derived from it) in t.
func withStepTimes(ctx context.Context, t *stepTimes) context.Context {
	return context.WithValue(ctx, stepTimesKey{}, t)
}

// do sends req and reads the whole reply; non-2xx/3xx is an *OpError.
// A reply read in full counts in the step times that req's context
// carries, if any, whatever its status (an error status as an error of
// the step too).
func do(c *http.Client, step string, req *http.Request) (*http.Response, []byte, error) {
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, &OpError{Step: step, Err: err}
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, nil, &OpError{Step: step, Err: err}
	}
	if t, ok := req.Context().Value(stepTimesKey{}).(*stepTimes); ok {
		t.d[step] = append(t.d[step], time.Since(start))
		if resp.StatusCode >= 400 {
			t.errs[step]++
		}
	}
	if resp.StatusCode >= 400 {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		return resp, body, &OpError{Step: step, Status: resp.StatusCode, Code: e.Error, Body: clip(body)}
	}
	return resp, body, nil
}

func clip(b []byte) string {
	if len(b) > 200 {
		b = b[:200]
	}
	return string(b)
}

func postJSON(ctx context.Context, c *http.Client, step, u string, body any) ([]byte, error) {
	var raw []byte
	switch v := body.(type) {
	case []byte:
		raw = v
	default:
		raw, _ = json.Marshal(v)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(raw))
	if err != nil {
		return nil, &OpError{Step: step, Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, b, err := do(c, step, req)
	if err == nil && resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		err = &OpError{Step: step, Status: resp.StatusCode, Body: clip(b)}
	}
	return b, err
}

// postForm posts a form with optional basic auth and decodes a JSON reply.
func postForm(ctx context.Context, c *http.Client, step, u string, form url.Values, user, pass string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return &OpError{Step: step, Err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	resp, body, err := do(c, step, req)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return &OpError{Step: step, Status: resp.StatusCode, Body: clip(body)}
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return &OpError{Step: step, Status: resp.StatusCode, Err: fmt.Errorf("decode: %w", err), Body: clip(body)}
		}
	}
	return nil
}

var csrfField = regexp.MustCompile(`name="(csrf[^"]*)" value="([^"]*)"`)
var roleField = regexp.MustCompile(`name="role"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="role"`)
