package main

import (
	"fmt"
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
func (r *runner) ips(app string) {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	_, err := r.client.GetIPAssignments(ctx, app)
	r.report("ips: GetIPAssignments", err)
}
