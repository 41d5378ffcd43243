package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/superfly/fly-go/flaps"
	"github.com/superfly/fly-go/tokens"
)

// authHeader checks the Authorization header flaps will send for this token:
// aloft accepts "Bearer <token>"; macaroon-looking tokens get "FlyV1".
func (r *runner) authHeader() {
	h := tokens.Parse(r.cfg.token).FlapsHeader()
	var err error
	if !strings.HasPrefix(h, "Bearer ") {
		scheme, _, _ := strings.Cut(h, " ")
		err = fmt.Errorf("flaps sends Authorization scheme %q, aloft expects Bearer", scheme)
	}
	r.report("auth: flaps Authorization header is Bearer", err)
}

func randomName() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "flygo-" + hex.EncodeToString(b)
}

// apps creates, gets and lists an app; returns its name or "" if creation failed.
func (r *runner) apps() string {
	name := randomName()
	if !r.createApp(name) {
		if r.cfg.fallbackApp == "" {
			return ""
		}
		name = r.cfg.fallbackApp
		r.skipf("apps: using FLY_COMPAT_APP="+name+" instead", "CreateApp failed")
	}
	r.waitForApp(name)
	r.getApp(name)
	r.listApps(name)
	return name
}

func (r *runner) createApp(name string) bool {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	app, err := r.client.CreateApp(ctx, flaps.CreateAppRequest{Name: name, Org: r.cfg.org})
	if !r.report("apps: CreateApp", err) {
		return false
	}
	r.verify("apps: CreateApp response fields", r.appChecks(app, name))
	return true
}

func (r *runner) waitForApp(name string) {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	r.report("apps: WaitForApp", r.client.WaitForApp(ctx, name))
}

func (r *runner) getApp(name string) {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	app, err := r.client.GetApp(ctx, name)
	if !r.report("apps: GetApp", err) {
		return
	}
	c := r.appChecks(app, name)
	if app != nil {
		c.nonEmpty("status", app.Status)
	}
	r.verify("apps: GetApp response fields", c)
}

func (r *runner) listApps(name string) {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	apps, err := r.client.ListApps(ctx, flaps.ListAppsRequest{OrgSlug: r.cfg.org})
	if !r.report("apps: ListApps(org_slug)", err) {
		return
	}
	var c checks
	found := false
	for _, a := range apps {
		found = found || a.Name == name
	}
	if !found {
		c.add("app %s not in the %d apps of {\"apps\": [...]}", name, len(apps))
	}
	r.verify("apps: ListApps contains the new app", c)
}

// deleteApp removes the app (flaps DeleteApp) and checks GetApp now 404s.
func (r *runner) deleteApp(name string) {
	ctx, cancel := r.stepCtx(60 * time.Second)
	defer cancel()
	if !r.report("apps: DeleteApp", r.client.DeleteApp(ctx, name)) {
		return
	}
	_, err := r.client.GetApp(ctx, name)
	var check error
	if err == nil {
		check = errors.New("GetApp still succeeds after DeleteApp")
	} else if !errors.Is(err, flaps.ErrFlapsNotFound) {
		check = fmt.Errorf("GetApp after delete should be 404: %w", err)
	}
	r.report("apps: GetApp after DeleteApp is 404", check)
}

// appChecks are the fields every app answer must have: its name, an id and
// the org.
func (r *runner) appChecks(app *flaps.App, name string) checks {
	var c checks
	if app == nil {
		c.add("response decoded to null")
		return c
	}
	c.equal("name", app.Name, name)
	c.nonEmpty("id", app.ID)
	c.equal("organization.slug", app.Organization.Slug, r.cfg.org)
	return c
}
