package main

import (
	"fmt"
	"slices"
	"time"

	fly "github.com/superfly/fly-go"
)

// secrets drives flaps' secrets API (`fly secrets set/list/unset`).
func (r *runner) secrets(app string) {
	version := r.updateSecrets(app)
	r.listSecrets(app, nil, []string{"FLYGO_A", "FLYGO_B"}, nil)
	if version > 0 {
		r.listSecrets(app, &version, []string{"FLYGO_A", "FLYGO_B"}, nil)
	}
	r.setSecret(app)
	r.getSecret(app)
	r.deleteSecret(app)
	r.unsetSecrets(app)
	r.listSecrets(app, nil, []string{"FLYGO_B"}, []string{"FLYGO_A", "FLYGO_C"})
}

// updateSecrets is `fly secrets set A=1 B=2`: POST /secrets {"values": {...}}.
func (r *runner) updateSecrets(app string) uint64 {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	vals := map[string]*string{"FLYGO_A": ptr("1"), "FLYGO_B": ptr("2")}
	out, err := r.client.UpdateAppSecrets(ctx, app, vals)
	if !r.report(`secrets: UpdateAppSecrets set ({"values": {...}})`, err) {
		return 0
	}
	var c checks
	if out.Version == 0 {
		c.add("version is 0/missing")
	}
	if !hasSecrets(out.Secrets, "FLYGO_A", "FLYGO_B") {
		c.add("secrets %v lacks FLYGO_A/FLYGO_B", secretNames(out.Secrets))
	}
	r.verify("secrets: UpdateAppSecrets response fields", c)
	return out.Version
}

func (r *runner) listSecrets(app string, version *uint64, want, unwanted []string) {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	step := fmt.Sprintf("secrets: ListAppSecrets (want %v)", want)
	if version != nil {
		step = fmt.Sprintf("secrets: ListAppSecrets (?version=%d)", *version)
	}
	list, err := r.client.ListAppSecrets(ctx, app, version, false)
	if !r.report(step, err) {
		return
	}
	var c checks
	if !hasSecrets(list, want...) {
		c.add("got %v, want %v", secretNames(list), want)
	}
	for _, u := range unwanted {
		if hasSecrets(list, u) {
			c.add("%s still listed", u)
		}
	}
	for _, s := range list {
		if s.Value != nil {
			c.add("%s value returned without show_secrets", s.Name)
		}
	}
	r.verify(step+" fields", c)
}

// setSecret: POST /secrets/FLYGO_C {"value": "3"}.
func (r *runner) setSecret(app string) {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	out, err := r.client.SetAppSecret(ctx, app, "FLYGO_C", "3")
	if r.report("secrets: SetAppSecret (POST /secrets/FLYGO_C)", err) {
		var c checks
		c.equal("name", out.Name, "FLYGO_C")
		r.verify("secrets: SetAppSecret response fields", c)
	}
}

func (r *runner) getSecret(app string) {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	out, err := r.client.GetAppSecrets(ctx, app, "FLYGO_C", nil, false)
	if r.report("secrets: GetAppSecrets (GET /secrets/FLYGO_C)", err) {
		var c checks
		c.equal("name", out.Name, "FLYGO_C")
		r.verify("secrets: GetAppSecrets response fields", c)
	}
}

func (r *runner) deleteSecret(app string) {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	_, err := r.client.DeleteAppSecret(ctx, app, "FLYGO_C")
	r.report("secrets: DeleteAppSecret (DELETE /secrets/FLYGO_C)", err)
}

// unsetSecrets is `fly secrets unset FLYGO_A`: a null value in "values".
func (r *runner) unsetSecrets(app string) {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	_, err := r.client.UpdateAppSecrets(ctx, app, map[string]*string{"FLYGO_A": nil})
	r.report(`secrets: UpdateAppSecrets unset ({"values": {"FLYGO_A": null}})`, err)
}

func hasSecrets(list []fly.AppSecret, names ...string) bool {
	got := secretNames(list)
	for _, n := range names {
		if !slices.Contains(got, n) {
			return false
		}
	}
	return true
}

func secretNames(list []fly.AppSecret) []string {
	names := make([]string, 0, len(list))
	for _, s := range list {
		names = append(names, s.Name)
	}
	return names
}
