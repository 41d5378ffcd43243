package main

import (
	"fmt"
	"slices"
	"time"

	fly "github.com/superfly/fly-go"
	"github.com/superfly/fly-go/flaps"
)

// platform covers `fly platform regions` and the placement probe flyctl runs
// before launching/creating volumes.
func (r *runner) platform(string) {
	r.getRegions()
	r.getPlacements()
}

func (r *runner) getRegions() {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	data, err := r.client.GetRegions(ctx)
	if !r.report("platform: GetRegions", err) {
		return
	}
	var c checks
	if len(data.Regions) == 0 {
		c.add(`"Regions" is empty (flaps decodes {"Regions": [...], "Nearest": "..."})`)
	} else {
		c.nonEmpty("Regions[0].code", data.Regions[0].Code)
		c.nonEmpty("Regions[0].name", data.Regions[0].Name)
	}
	c.nonEmpty("Nearest", data.Nearest)
	r.verify("platform: GetRegions response fields", c)
}

func (r *runner) getPlacements() {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	req := &flaps.GetPlacementsRequest{
		ComputeRequirements: &fly.MachineGuest{CPUKind: "shared", CPUs: 1, MemoryMB: 256},
		Count:               1,
		Org:                 r.cfg.org,
	}
	regions, err := r.client.GetPlacements(ctx, req)
	if r.report("platform: GetPlacements", err) && len(regions) == 0 {
		r.report("platform: GetPlacements response fields", fmt.Errorf(`"Regions" is empty`))
	}
}

// certs covers `fly certs list/add/show/check/remove` through flaps.
func (r *runner) certs(app string) {
	// .test: aloft's development CA only signs reserved names without an
	// uploaded certificate (a real domain would need ACME, which aloft lacks).
	host := randomName() + ".test"
	r.listCerts(app, "", true)
	r.addCert(app, host)
	r.getCert(app, host)
	r.checkCert(app, host)
	r.listCerts(app, host, true)
	r.deleteCert(app, host)
	r.listCerts(app, host, false)
}

func (r *runner) listCerts(app, host string, want bool) {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	out, err := r.client.ListCertificates(ctx, app, nil)
	step := "certs: ListCertificates"
	if host != "" {
		step = fmt.Sprintf("certs: ListCertificates (listed=%t)", want)
	}
	if err == nil && host != "" {
		got := slices.ContainsFunc(out.Certificates, func(s fly.CertificateSummary) bool { return s.Hostname == host })
		if got != want {
			err = fmt.Errorf(`%s listed=%t in {"certificates": %d entries}, want %t`, host, got, len(out.Certificates), want)
		}
	}
	r.report(step, err)
}

// addCert is `fly certs add <host>`: POST /certificates/acme {"hostname"}.
func (r *runner) addCert(app, host string) {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	out, err := r.client.CreateACMECertificate(ctx, app, fly.CreateCertificateRequest{Hostname: host})
	if r.report("certs: CreateACMECertificate (POST /certificates/acme)", err) {
		var c checks
		c.equal("hostname", out.Hostname, host)
		c.nonEmpty("status", out.Status)
		r.verify("certs: CreateACMECertificate response fields", c)
	}
}

func (r *runner) getCert(app, host string) {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	out, err := r.client.GetCertificate(ctx, app, host)
	if r.report("certs: GetCertificate (GET /certificates/{host})", err) {
		var c checks
		c.equal("hostname", out.Hostname, host)
		r.verify("certs: GetCertificate response fields", c)
	}
}

func (r *runner) checkCert(app, host string) {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	_, err := r.client.CheckCertificate(ctx, app, host)
	r.report("certs: CheckCertificate (POST /certificates/{host}/check)", err)
}

func (r *runner) deleteCert(app, host string) {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	r.report("certs: DeleteCertificate", r.client.DeleteCertificate(ctx, app, host))
}

// ips covers `fly ips list` through flaps.
func (r *runner) ips(app string) {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	_, err := r.client.GetIPAssignments(ctx, app)
	r.report("ips: GetIPAssignments", err)
}
