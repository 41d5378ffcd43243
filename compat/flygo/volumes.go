package main

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	fly "github.com/superfly/fly-go"
	"github.com/superfly/fly-go/flaps"
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

// createVolume sends what `fly volumes create data --size 1
// --scheduled-snapshots` sends (flyctl fills encrypted, require_unique_zone,
// snapshot_retention, auto_backup_enabled and fstype; the rest go as null).
func (r *runner) createVolume(app string) *fly.Volume {
	ctx, cancel := r.stepCtx(60 * time.Second)
	defer cancel()
	req := fly.CreateVolumeRequest{
		Name:              "flygo_data",
		Region:            r.volumeRegion(),
		SizeGb:            ptr(1),
		Encrypted:         ptr(true),
		RequireUniqueZone: ptr(true),
		UniqueZoneAppWide: ptr(false),
		SnapshotRetention: ptr(5),
		AutoBackupEnabled: ptr(true),
		FSType:            ptr("ext4"),
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
	volumeSettings(&c, v, 5, true)
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
	volumeSettings(&c, v, 5, true)
	r.verify("volumes: GetVolume response fields", c)
}

// volumeSettings checks the fields flaps decodes beyond the basics: where the
// volume is, what it is, and its snapshot settings.
func volumeSettings(c *checks, v *fly.Volume, retention int, backups bool) {
	c.nonEmpty("zone", v.Zone)
	c.equal("encrypted", v.Encrypted, true)
	c.equal("host_status", v.HostStatus, "ok")
	c.equal("snapshot_retention", v.SnapshotRetention, retention)
	c.equal("auto_backup_enabled", v.AutoBackupEnabled, backups)
	if v.IsAttached() {
		c.add("attached (machine %v, alloc %v) before any machine mounts it", v.AttachedMachine, v.AttachedAllocation)
	}
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
		s := snaps[0]
		c.nonEmpty("[0].id", s.ID)
		c.nonEmpty("[0].status", s.Status)
		c.equal("[0].volume_size", s.VolumeSize, 2)
		if !strings.HasPrefix(s.Digest, "sha256:") {
			c.add("[0].digest = %q, want sha256:...", s.Digest)
		}
		if s.Size <= 0 {
			c.add("[0].size = %d, want > 0", s.Size)
		}
		if s.CreatedAt.IsZero() {
			c.add("[0].created_at is missing")
		}
		if s.RetentionDays == nil {
			c.add("[0].retention_days is missing")
		} else {
			c.equal("[0].retention_days", *s.RetentionDays, 5)
		}
	}
	r.verify("volumes: GetVolumeSnapshots response fields", c)
}

// updateVolume is `fly volumes update --snapshot-retention 7`, then
// `--scheduled-snapshots=false`, then a retention out of bounds (a 422).
func (r *runner) updateVolume(app, id string) {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	req := fly.UpdateVolumeRequest{SnapshotRetention: ptr(7)}
	v, err := r.client.UpdateVolume(ctx, app, id, req)
	if r.report("volumes: UpdateVolume (PUT, snapshot_retention=7)", err) {
		var c checks
		c.equal("id", v.ID, id)
		c.equal("snapshot_retention", v.SnapshotRetention, 7)
		c.equal("auto_backup_enabled", v.AutoBackupEnabled, true)
		r.verify("volumes: UpdateVolume response fields", c)
	}
	req = fly.UpdateVolumeRequest{AutoBackupEnabled: ptr(false)}
	v, err = r.client.UpdateVolume(ctx, app, id, req)
	if r.report("volumes: UpdateVolume (PUT, auto_backup_enabled=false)", err) {
		var c checks
		c.equal("snapshot_retention", v.SnapshotRetention, 7)
		c.equal("auto_backup_enabled", v.AutoBackupEnabled, false)
		r.verify("volumes: UpdateVolume keeps what it does not set", c)
	}
	_, err = r.client.UpdateVolume(ctx, app, id, fly.UpdateVolumeRequest{SnapshotRetention: ptr(61)})
	var fe *flaps.FlapsError
	if !errors.As(err, &fe) || fe.ResponseStatusCode != http.StatusUnprocessableEntity {
		err = fmt.Errorf("snapshot_retention 61 answered %v, want HTTP 422", err)
	} else {
		err = nil
	}
	r.report("volumes: UpdateVolume refuses snapshot_retention 61", err)
	got, err := r.client.GetVolume(ctx, app, id)
	if r.report("volumes: GetVolume after UpdateVolume", err) {
		var c checks
		c.equal("snapshot_retention", got.SnapshotRetention, 7)
		c.equal("auto_backup_enabled", got.AutoBackupEnabled, false)
		r.verify("volumes: UpdateVolume is stored", c)
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
