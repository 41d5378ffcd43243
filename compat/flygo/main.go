// Command flygo drives an aloft control plane through fly-go's flaps client,
// the way flyctl does, and reports every incompatibility it finds.
//
// Configuration (environment):
//
//	FLY_FLAPS_BASE_URL  aloft's API URL, e.g. http://127.0.0.1:4280 (required)
//	FLY_API_TOKEN       the org API token (required)
//	FLY_ORG             org slug (default "personal")
//	FLY_IMAGE           machine image (default "registry.local/personal/hello:v1")
//	FLY_REGION          region for launch/volumes (default: the launched machine's region)
//	FLY_COMPAT_SKIP     comma-separated groups to skip: machines,volumes,secrets,certs,platform,ips
//	                    (and volume-update: the one volume step aloft does not serve yet)
//	FLY_COMPAT_TRACE    if non-empty, log every HTTP request/response flaps makes to stderr
//	FLY_COMPAT_APP      an existing app to use if CreateApp fails (it is deleted at the end)
//	FLY_COMPAT_OTHER_TOKEN  a token that may not see the app this run creates (another org's,
//	                    or a deploy token of another app): AppNameAvailable must call it taken
//
// Every step prints "ok   <step>" or "FAIL <step>: <why>"; the exit status is
// non-zero when any step failed.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/superfly/fly-go/flaps"
	"github.com/superfly/fly-go/tokens"
)

type config struct {
	baseURL string
	token   string
	org     string
	image   string
	region  string
	skip    map[string]bool
	trace   bool
	// fallbackApp (FLY_COMPAT_APP) is an existing app used when CreateApp
	// fails, so the later groups still run.
	fallbackApp string
	// otherToken (FLY_COMPAT_OTHER_TOKEN) may not see the app this run creates.
	otherToken string
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func loadConfig() (config, error) {
	cfg := config{
		baseURL: os.Getenv("FLY_FLAPS_BASE_URL"),
		token:   os.Getenv("FLY_API_TOKEN"),
		org:     envOr("FLY_ORG", "personal"),
		image:   envOr("FLY_IMAGE", "registry.local/personal/hello:v1"),
		region:  os.Getenv("FLY_REGION"),
		skip:    map[string]bool{},
		trace:   os.Getenv("FLY_COMPAT_TRACE") != "",

		fallbackApp: os.Getenv("FLY_COMPAT_APP"),
		otherToken:  os.Getenv("FLY_COMPAT_OTHER_TOKEN"),
	}
	for _, g := range strings.Split(os.Getenv("FLY_COMPAT_SKIP"), ",") {
		if g = strings.TrimSpace(g); g != "" {
			cfg.skip[g] = true
		}
	}
	if cfg.baseURL == "" || cfg.token == "" {
		return cfg, fmt.Errorf("FLY_FLAPS_BASE_URL and FLY_API_TOKEN must be set")
	}
	return cfg, nil
}

// newClient builds the flaps client exactly as flyctl does: the base URL comes
// from FLY_FLAPS_BASE_URL and the token is parsed by fly-go's tokens package.
func newClient(ctx context.Context, cfg config) (*flaps.Client, error) {
	opts := flaps.NewClientOpts{
		UserAgent: "flyctl/aloft-compat-flygo",
		Tokens:    tokens.Parse(cfg.token),
	}
	if cfg.trace {
		opts.Transport = &traceTransport{}
	}
	return flaps.NewWithOptions(ctx, opts)
}

func main() {
	cfg, err := loadConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, "flygo:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	client, err := newClient(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "flygo: building flaps client:", err)
		os.Exit(2)
	}
	r := &runner{ctx: ctx, client: client, cfg: cfg}
	r.run()
	os.Exit(r.summary())
}

// run executes every group in flyctl's order; later groups reuse the app.
func (r *runner) run() {
	r.authHeader()
	app := r.apps()
	if app == "" {
		r.skipf("everything else", "no app could be created")
		return
	}
	groups := []struct {
		name string
		fn   func(app string)
	}{
		{"platform", r.platform},
		{"machines", r.machines},
		{"volumes", r.volumes},
		{"secrets", r.secrets},
		{"certs", r.certs},
		{"ips", r.ips},
	}
	for _, g := range groups {
		if r.cfg.skip[g.name] {
			r.skipf(g.name, "FLY_COMPAT_SKIP")
			continue
		}
		g.fn(app)
	}
	r.deleteApp(app)
}
