package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

// traceTransport logs each request flaps sends and aloft's answer to stderr
// (enabled by FLY_COMPAT_TRACE). It sits under flaps' own transports, so it
// sees exactly what goes on the wire.
type traceTransport struct{}

func (traceTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	reqBody := drain(&req.Body)
	fmt.Fprintf(os.Stderr, "--> %s %s auth=%q nonce=%q\n", req.Method, req.URL.RequestURI(),
		authScheme(header(req.Header, "Authorization")), header(req.Header, "fly-machine-lease-nonce"))
	if reqBody != "" {
		fmt.Fprintf(os.Stderr, "    body: %s\n", reqBody)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		fmt.Fprintf(os.Stderr, "<-- error: %v\n", err)
		return resp, err
	}
	fmt.Fprintf(os.Stderr, "<-- %d %s\n", resp.StatusCode, drain(&resp.Body))
	return resp, nil
}

// header finds a header whatever its case: flaps sets the lease nonce under
// the non-canonical key "fly-machine-lease-nonce", which Header.Get misses.
func header(h http.Header, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// drain reads a body for logging and puts an identical reader back.
func drain(body *io.ReadCloser) string {
	if *body == nil || *body == http.NoBody {
		return ""
	}
	b, _ := io.ReadAll(*body)
	_ = (*body).Close()
	*body = io.NopCloser(bytes.NewReader(b))
	return strings.TrimSpace(string(b))
}

// authScheme shows the Authorization scheme and a token prefix, never the token.
func authScheme(h string) string {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok {
		return h
	}
	if len(tok) > 8 {
		tok = tok[:8] + "…"
	}
	return scheme + " " + tok
}
