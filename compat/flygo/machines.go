package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	fly "github.com/superfly/fly-go"
	"github.com/superfly/fly-go/flaps"
)

// machineFlow is one machine's life cycle, driven as flyctl drives it.
type machineFlow struct {
	*runner
	app   string
	id    string
	m     *fly.Machine // the latest machine decoded from aloft
	nonce string       // the lease nonce while held
}

const leaseTTL = 120 // seconds, flyctl's default lease for deploys/updates

func (r *runner) machines(app string) {
	f := &machineFlow{runner: r, app: app}
	if !f.launch() {
		r.skipf("machines: remaining machine steps", "Launch failed")
		return
	}
	f.wait("after Launch", fly.MachineStateStarted, f.m.InstanceID)
	f.acquireLease()
	f.findLease()
	f.refreshLease()
	f.stop()
	f.wait("after Stop", fly.MachineStateStopped, f.m.InstanceID)
	f.exitEvent()
	f.update()
	f.wait("after Update (settle)", fly.MachineStateStopped, f.m.InstanceID)
	f.start("")
	f.wait("after Start", fly.MachineStateStarted, f.m.InstanceID)
	f.afterStart()
}

// afterStart runs the steps that need a started machine, then tears it down.
func (f *machineFlow) afterStart() {
	f.exec()
	f.get()
	f.list()
	f.listActive()
	f.metadata()
	f.cordon()
	f.restart()
	f.wait("after Restart", fly.MachineStateStarted, f.m.InstanceID)
	f.ps()
	f.waitTwoStates()
	f.stopDefault()
	f.wait("after Stop with default timeout", fly.MachineStateStopped, f.m.InstanceID)
	f.start("second ")
	f.wait("after second Start", fly.MachineStateStarted, f.m.InstanceID)
	f.releaseLease()
	f.kill()
	f.settle(fly.MachineStateStarted) // the on-failure policy restarts it
	f.destroy()
	f.waitDestroyed()
	f.listAfterDestroy()
	f.launchPreset("performance-6x")
}

// launchInput is what `fly machine run`/`fly deploy` send for a new machine.
func (f *machineFlow) launchInput() fly.LaunchMachineInput {
	return fly.LaunchMachineInput{
		Region: f.cfg.region,
		Config: &fly.MachineConfig{
			Image: f.cfg.image,
			Env:   map[string]string{"STAGE": "launch", "FOO": "bar"},
			Guest: &fly.MachineGuest{CPUKind: "shared", CPUs: 1, MemoryMB: 256},
			Services: []fly.MachineService{{
				Protocol:     "tcp",
				InternalPort: 8080,
				Autostop:     ptr(fly.MachineAutostopStop),
				Autostart:    ptr(true),
				Ports: []fly.MachinePort{
					{Port: ptr(80), Handlers: []string{"http"}, ForceHTTPS: true},
					{Port: ptr(443), Handlers: []string{"tls", "http"}},
				},
			}},
			Metadata: map[string]string{
				fly.MachineConfigMetadataKeyFlyPlatformVersion: fly.MachineFlyPlatformVersion2,
				fly.MachineConfigMetadataKeyFlyProcessGroup:    fly.MachineProcessGroupApp,
				"compat": "flygo",
			},
			Restart: &fly.MachineRestart{Policy: fly.MachineRestartPolicyOnFailure, MaxRetries: 3},
		},
	}
}

func (f *machineFlow) launch() bool {
	ctx, cancel := f.stepCtx(60 * time.Second)
	defer cancel()
	m, err := f.client.Launch(ctx, f.app, f.launchInput())
	if !f.report("machines: Launch", err) {
		return false
	}
	f.m, f.id = m, m.ID
	f.region = m.Region
	var c checks
	c.nonEmpty("id", m.ID)
	c.oneOf("state", m.State, "created", "starting", "started")
	c.nonEmpty("region", m.Region)
	c.nonEmpty("instance_id", m.InstanceID)
	c.nonEmpty("private_ip", m.PrivateIP)
	c.nonEmpty("created_at", m.CreatedAt)
	checkConfig(&c, m.Config, f.cfg.image, "launch")
	f.verify("machines: Launch response fields", c)
	return m.ID != ""
}

// checkConfig compares a decoded MachineConfig with what launchInput sent.
func checkConfig(c *checks, cfg *fly.MachineConfig, image, stage string) {
	if cfg == nil {
		c.add("config is missing")
		return
	}
	c.equal("config.image", cfg.Image, image)
	c.equal("config.env.STAGE", cfg.Env["STAGE"], stage)
	c.equal("config.env.FOO", cfg.Env["FOO"], "bar")
	if g := cfg.Guest; g == nil {
		c.add("config.guest is missing")
	} else {
		c.equal("config.guest", fmt.Sprintf("%s/%d/%d", g.CPUKind, g.CPUs, g.MemoryMB), "shared/1/256")
	}
	c.equal("config.metadata.compat", cfg.Metadata["compat"], "flygo")
	c.equal("config.metadata.fly_platform_version", cfg.Metadata["fly_platform_version"], "v2")
	if cfg.Restart == nil {
		c.add("config.restart is missing")
	} else {
		c.equal("config.restart", fmt.Sprintf("%s/%d", cfg.Restart.Policy, cfg.Restart.MaxRetries), "on-failure/3")
	}
	checkServices(c, cfg.Services)
}

func checkServices(c *checks, svcs []fly.MachineService) {
	if len(svcs) != 1 {
		c.add("config.services has %d entries, want 1", len(svcs))
		return
	}
	s := svcs[0]
	c.equal("services[0].protocol", s.Protocol, "tcp")
	c.equal("services[0].internal_port", s.InternalPort, 8080)
	if s.Autostop == nil || *s.Autostop != fly.MachineAutostopStop {
		c.add("services[0].autostop is not stop/true")
	}
	if len(s.Ports) != 2 || s.Ports[0].Port == nil || *s.Ports[0].Port != 80 {
		c.add("services[0].ports is not [80, 443]")
	} else if !s.Ports[0].ForceHTTPS || len(s.Ports[1].Handlers) != 2 {
		c.add("services[0].ports lost force_https or handlers")
	}
}

// wait calls flaps Wait as flyctl's WaitForStartOrStop does (state, timeout
// and the machine's instance version), then confirms the state with Get.
func (f *machineFlow) wait(label, state, version string) {
	ctx, cancel := f.stepCtx(70 * time.Second)
	defer cancel()
	opts := []flaps.WaitOption{flaps.WithWaitStates(state), flaps.WithWaitTimeout(30 * time.Second)}
	if version != "" {
		opts = append(opts, flaps.WithWaitVersion(version))
	}
	step := fmt.Sprintf("machines: Wait %s (state=%s)", label, state)
	if !f.report(step, f.client.Wait(ctx, f.app, f.id, opts...)) {
		f.settle(state)
		return
	}
	m, err := f.client.Get(ctx, f.app, f.id)
	if err == nil && m.State != state {
		err = fmt.Errorf("Wait returned but Get says state %q", m.State)
	}
	f.report(step+" then Get agrees", err)
}

// settle polls Get (silently) so later steps run on a machine in `state`
// even when Wait itself is incompatible.
func (f *machineFlow) settle(state string) {
	deadline := time.Now().Add(30 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		ctx, cancel := f.stepCtx(10 * time.Second)
		m, err := f.client.Get(ctx, f.app, f.id)
		cancel()
		if err == nil {
			last = m.State
			if m.State == state {
				return
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "  (settle: machine %s never reached %s, last %q)\n", f.id, state, last)
}

func (f *machineFlow) acquireLease() {
	ctx, cancel := f.stepCtx(30 * time.Second)
	defer cancel()
	lease, err := f.client.AcquireLease(ctx, f.app, f.id, ptr(leaseTTL))
	if !f.report("machines: AcquireLease (?ttl=120)", err) {
		return
	}
	var c checks
	c.equal("status", lease.Status, "success") // flyctl refuses anything else
	if lease.Data == nil {
		c.add("data is missing")
	} else {
		c.nonEmpty("data.nonce", lease.Data.Nonce)
		c.nonEmpty("data.owner", lease.Data.Owner)
		c.nonEmpty("data.version", lease.Data.Version)
		if lease.Data.ExpiresAt < time.Now().Unix()+leaseTTL-30 {
			c.add("data.expires_at %d is not ~now+%ds (unix seconds)", lease.Data.ExpiresAt, leaseTTL)
		}
		f.nonce = lease.Data.Nonce
	}
	f.verify("machines: AcquireLease response fields", c)
}

func (f *machineFlow) findLease() {
	ctx, cancel := f.stepCtx(30 * time.Second)
	defer cancel()
	lease, err := f.client.FindLease(ctx, f.app, f.id)
	if !f.report("machines: FindLease", err) {
		return
	}
	var c checks
	c.equal("status", lease.Status, "success")
	if lease.Data == nil {
		c.add("data is missing")
	} else {
		c.nonEmpty("data.owner", lease.Data.Owner)
	}
	f.verify("machines: FindLease response fields", c)
}

// refreshLease is what flyctl's background lease refresher does during deploys.
func (f *machineFlow) refreshLease() {
	ctx, cancel := f.stepCtx(30 * time.Second)
	defer cancel()
	lease, err := f.client.RefreshLease(ctx, f.app, f.id, ptr(leaseTTL), f.nonce)
	if !f.report("machines: RefreshLease (nonce header, ?ttl=120)", err) {
		return
	}
	var c checks
	c.equal("status", lease.Status, "success")
	if lease.Data == nil || lease.Data.Nonce != f.nonce {
		c.add("refresh must return the same nonce (flyctl errors 'unexpectedly received a new nonce')")
	}
	f.verify("machines: RefreshLease keeps the nonce", c)
}

func (f *machineFlow) stop() {
	ctx, cancel := f.stepCtx(60 * time.Second)
	defer cancel()
	in := fly.StopMachineInput{ID: f.id, Timeout: fly.Duration{Duration: 10 * time.Second}}
	f.report("machines: Stop (timeout 10s, nonce)", f.client.Stop(ctx, f.app, in, f.nonce))
}

// stopDefault is `fly machine stop` without --timeout: the zero fly.Duration
// still marshals, so the body is {"id": "...", "timeout": "0s"}.
func (f *machineFlow) stopDefault() {
	ctx, cancel := f.stepCtx(60 * time.Second)
	defer cancel()
	in := fly.StopMachineInput{ID: f.id}
	f.report(`machines: Stop with flyctl's default ({"timeout": "0s"}, nonce)`, f.client.Stop(ctx, f.app, in, f.nonce))
}

// update sends the current config back with one env change, as
// `fly machine update --skip-start` does (Get, edit, Update with the nonce).
func (f *machineFlow) update() {
	ctx, cancel := f.stepCtx(60 * time.Second)
	defer cancel()
	cur, err := f.client.Get(ctx, f.app, f.id)
	if err != nil || cur.Config == nil {
		f.report("machines: Update", fmt.Errorf("cannot Get the machine to edit: %v", err))
		return
	}
	cur.Config.Env["STAGE"] = "updated"
	in := fly.LaunchMachineInput{ID: f.id, Name: cur.Name, Region: cur.Region, Config: cur.Config, SkipLaunch: true}
	m, err := f.client.Update(ctx, f.app, in, f.nonce)
	if !f.report("machines: Update (env change, skip_launch, nonce)", err) {
		return
	}
	var c checks
	c.equal("id", m.ID, f.id)
	if m.InstanceID == "" || m.InstanceID == cur.InstanceID {
		c.add("instance_id %q did not change from %q", m.InstanceID, cur.InstanceID)
	}
	checkConfig(&c, m.Config, f.cfg.image, "updated")
	f.verify("machines: Update response fields", c)
	f.m = m
}

func (f *machineFlow) start(label string) {
	ctx, cancel := f.stepCtx(60 * time.Second)
	defer cancel()
	out, err := f.client.Start(ctx, f.app, f.id, f.nonce)
	if !f.report("machines: "+label+"Start (nonce)", err) {
		return
	}
	var c checks
	c.equal("previous_state", out.PreviousState, "stopped")
	f.verify("machines: "+label+"Start response fields", c)
}

// isNotFound reports a flaps 404.
func isNotFound(err error) bool {
	var fe *flaps.FlapsError
	return errors.As(err, &fe) && fe.ResponseStatusCode == http.StatusNotFound
}
