package main

import (
	"errors"
	"fmt"
	"strings"
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

// ips covers `fly ips list` through flaps.
// ips is `fly ips list` and `fly ips allocate-v6`: aloft gives apps no
// addresses of their own, so the list is empty and an allocation is a 422
// that says why (flaps returns it as an error carrying that text).
func (r *runner) ips(app string) {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	res, err := r.client.GetIPAssignments(ctx, app)
	if r.report("ips: GetIPAssignments", err) {
		var c checks
		if res == nil || len(res.IPs) != 0 {
			c.add("want an empty {\"ips\": []}, got %+v", res)
		}
		r.verify("ips: GetIPAssignments is empty", c)
	}
	_, err = r.client.AssignIP(ctx, app, flaps.AssignIPRequest{Type: "v6", Region: r.volumeRegion()})
	var ferr *flaps.FlapsError
	switch {
	case err == nil:
		err = fmt.Errorf("AssignIP succeeded; aloft has no per-app addresses to give")
	case !errors.As(err, &ferr) || ferr.ResponseStatusCode != 422:
		err = fmt.Errorf("want a 422 naming the reason, got %w", err)
	case !strings.Contains(err.Error(), "no IP addresses of their own"):
		err = fmt.Errorf("the 422 does not say why: %w", err)
	default:
		err = nil
	}
	r.report("ips: AssignIP is refused saying why", err)
}
