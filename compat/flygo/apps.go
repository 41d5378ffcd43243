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
	r.appNameAvailable(name)
	return name
}

// appNameAvailable is flyctl's name check before `fly apps create`/`fly launch`: GET
// /v1/apps/{name}, where the exact texts "app not found" (free) and "unauthorized" (held by an
// app the token may not see) decide.
func (r *runner) appNameAvailable(taken string) {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	ok, err := r.client.AppNameAvailable(ctx, randomName())
	if err == nil && !ok {
		err = errors.New("a fresh name is reported taken (the 404 must say exactly \"app not found\")")
	}
	r.report("apps: AppNameAvailable is true for a fresh name", err)
	r.appNameVisible(taken)
	if r.cfg.otherToken == "" {
		r.skipf("apps: AppNameAvailable is false for an app the token cannot see", "no FLY_COMPAT_OTHER_TOKEN")
		return
	}
	other, err := newClient(ctx, config{baseURL: r.cfg.baseURL, token: r.cfg.otherToken, trace: r.cfg.trace})
	if err == nil {
		ok, err = other.AppNameAvailable(ctx, taken)
		if err == nil && ok {
			err = errors.New("a name held by an app the token cannot see is reported free (the 403 must say exactly \"unauthorized\")")
		}
	}
	r.report("apps: AppNameAvailable is false for an app the token cannot see (403 unauthorized)", err)
}

// appNameVisible asks about an app the token can read. fly-go v0.9.3 logs err.Error() before
// looking at err, which panics on the nil error of a found app (newer fly-go answers false):
// the panic is its own, so it is reported as a skip, not a failure.
func (r *runner) appNameVisible(name string) {
	step := "apps: AppNameAvailable is false for the token's own app"
	defer func() {
		if p := recover(); p != nil {
			r.skipf(step, fmt.Sprintf("fly-go v0.9.3 panics on a found app (%v)", p))
		}
	}()
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	ok, err := r.client.AppNameAvailable(ctx, name)
	if err == nil && ok {
		err = errors.New("the app's own name is reported free")
	}
	r.report(step, err)
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
