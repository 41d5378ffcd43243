package main

import (
	"fmt"
	"slices"
	"time"

	fly "github.com/superfly/fly-go"
)

// volumes runs `fly volumes create/show/list/extend/snapshots/update/destroy`.
func (r *runner) volumes(app string) {
	v := r.createVolume(app)
	if v == nil {
		r.skipf("volumes: remaining volume steps", "CreateVolume failed")
		return
	}
	r.getVolume(app, v.ID)
	r.listVolumes(app, v.ID, true)
	r.extendVolume(app, v.ID)
	r.snapshots(app, v.ID)
	if r.cfg.skip["volume-update"] {
		r.skipf("volumes: UpdateVolume", "FLY_COMPAT_SKIP")
	} else {
		r.updateVolume(app, v.ID)
	}
	r.deleteVolume(app, v.ID)
	r.listVolumes(app, v.ID, false)
}

func (r *runner) volumeRegion() string {
	if r.cfg.region != "" {
		return r.cfg.region
	}
	return r.region
}

// createVolume sends what `fly volumes create data --size 1` sends (flyctl
// fills encrypted, require_unique_zone and snapshot_retention).
func (r *runner) createVolume(app string) *fly.Volume {
	ctx, cancel := r.stepCtx(60 * time.Second)
	defer cancel()
	req := fly.CreateVolumeRequest{
		Name:              "flygo_data",
		Region:            r.volumeRegion(),
		SizeGb:            ptr(1),
		Encrypted:         ptr(true),
		RequireUniqueZone: ptr(true),
		SnapshotRetention: ptr(5),
	}
	v, err := r.client.CreateVolume(ctx, app, req)
	if !r.report("volumes: CreateVolume", err) {
		return nil
	}
	var c checks
	c.nonEmpty("id", v.ID)
	c.equal("name", v.Name, "flygo_data")
	c.equal("size_gb", v.SizeGb, 1)
	c.nonEmpty("region", v.Region)
	c.nonEmpty("state", v.State)
	if v.CreatedAt.IsZero() {
		c.add("created_at is missing")
	}
	r.verify("volumes: CreateVolume response fields", c)
	if v.ID == "" {
		return nil
	}
	return v
}

func (r *runner) getVolume(app, id string) {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	v, err := r.client.GetVolume(ctx, app, id)
	if !r.report("volumes: GetVolume", err) {
		return
	}
	var c checks
	c.equal("id", v.ID, id)
	c.equal("name", v.Name, "flygo_data")
	c.equal("size_gb", v.SizeGb, 1)
	r.verify("volumes: GetVolume response fields", c)
}

// listVolumes uses GetVolumes (flyctl's list; it drops destroyed states).
func (r *runner) listVolumes(app, id string, want bool) {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	vs, err := r.client.GetVolumes(ctx, app)
	step := fmt.Sprintf("volumes: GetVolumes (listed=%t)", want)
	if err == nil {
		got := slices.ContainsFunc(vs, func(v fly.Volume) bool { return v.ID == id })
		if got != want {
			err = fmt.Errorf("volume %s listed=%t among %d, want %t", id, got, len(vs), want)
		}
	}
	r.report(step, err)
}

func (r *runner) extendVolume(app, id string) {
	ctx, cancel := r.stepCtx(60 * time.Second)
	defer cancel()
	v, _, err := r.client.ExtendVolume(ctx, app, id, 2)
	if !r.report("volumes: ExtendVolume to 2GB", err) {
		return
	}
	var c checks
	if v == nil {
		c.add(`response lacks {"volume": {...}, "needs_restart": bool}`)
	} else {
		c.equal("volume.size_gb", v.SizeGb, 2)
	}
	r.verify("volumes: ExtendVolume response fields", c)
}

func (r *runner) snapshots(app, id string) {
	ctx, cancel := r.stepCtx(60 * time.Second)
	defer cancel()
	r.report("volumes: CreateVolumeSnapshot", r.client.CreateVolumeSnapshot(ctx, app, id))
	snaps, err := r.client.GetVolumeSnapshots(ctx, app, id)
	if !r.report("volumes: GetVolumeSnapshots", err) {
		return
	}
	var c checks
	if len(snaps) == 0 {
		c.add("no snapshots listed after CreateVolumeSnapshot")
	} else {
		c.nonEmpty("[0].id", snaps[0].ID)
		c.nonEmpty("[0].status", snaps[0].Status)
	}
	r.verify("volumes: GetVolumeSnapshots response fields", c)
}

// updateVolume is `fly volumes update --snapshot-retention 7`.
func (r *runner) updateVolume(app, id string) {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	req := fly.UpdateVolumeRequest{SnapshotRetention: ptr(7)}
	v, err := r.client.UpdateVolume(ctx, app, id, req)
	if r.report("volumes: UpdateVolume (PUT, snapshot_retention=7)", err) {
		var c checks
		c.equal("snapshot_retention", v.SnapshotRetention, 7)
		r.verify("volumes: UpdateVolume response fields", c)
	}
}

func (r *runner) deleteVolume(app, id string) {
	ctx, cancel := r.stepCtx(60 * time.Second)
	defer cancel()
	v, err := r.client.DeleteVolume(ctx, app, id)
	if r.report("volumes: DeleteVolume", err) {
		var c checks
		c.equal("id", v.ID, id)
		// flyctl prints the returned state; flaps treats these as destroyed.
		c.oneOf("state", v.State, "scheduling_destroy", "pending_destroy", "destroying", "destroyed")
		r.verify("volumes: DeleteVolume returns the volume", c)
	}
}
