package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	fly "github.com/superfly/fly-go"
	"github.com/superfly/fly-go/flaps"
)

// exec runs a command the way `fly machine exec <id> "<cmd>"` does: Cmd is a
// single string and Timeout is in seconds.
func (f *machineFlow) exec() {
	ctx, cancel := f.stepCtx(60 * time.Second)
	defer cancel()
	out, err := f.client.Exec(ctx, f.app, f.id, &fly.MachineExecRequest{Cmd: "echo flygo-hello", Timeout: 10})
	if !f.report(`machines: Exec (cmd "echo flygo-hello")`, err) {
		return
	}
	var c checks
	c.equal("exit_code", out.ExitCode, 0)
	if !strings.Contains(out.StdOut, "flygo-hello") {
		c.add("stdout %q lacks flygo-hello (stderr %q)", out.StdOut, out.StdErr)
	}
	f.verify("machines: Exec response fields", c)
}

func (f *machineFlow) get() {
	ctx, cancel := f.stepCtx(30 * time.Second)
	defer cancel()
	m, err := f.client.Get(ctx, f.app, f.id)
	if !f.report("machines: Get", err) {
		return
	}
	var c checks
	c.equal("id", m.ID, f.id)
	c.equal("state", m.State, fly.MachineStateStarted)
	c.nonEmpty("region", m.Region)
	c.nonEmpty("instance_id", m.InstanceID)
	c.nonEmpty("private_ip", m.PrivateIP)
	c.nonEmpty("image_ref.repository", m.ImageRef.Repository)
	if len(m.Events) == 0 {
		c.add("events is empty (flyctl reads start/exit events)")
	}
	checkConfig(&c, m.Config, f.cfg.image, "updated")
	checkVersion(&c, m)
	f.verify("machines: Get response fields", c)
	f.m = m
}

func (f *machineFlow) list() {
	ctx, cancel := f.stepCtx(30 * time.Second)
	defer cancel()
	ms, err := f.client.List(ctx, f.app, "")
	if !f.report("machines: List", err) {
		return
	}
	var c checks
	i := slices.IndexFunc(ms, func(m *fly.Machine) bool { return m.ID == f.id })
	if i < 0 {
		c.add("machine %s not among %d listed", f.id, len(ms))
	} else {
		c.equal("state", ms[i].State, fly.MachineStateStarted)
		checkConfig(&c, ms[i].Config, f.cfg.image, "updated")
	}
	f.verify("machines: List response fields", c)
}

// listActive is what `fly status` / `fly deploy` use (ListActive and
// ListFlyAppsMachines filter on state and the fly_platform_version metadata).
func (f *machineFlow) listActive() {
	ctx, cancel := f.stepCtx(30 * time.Second)
	defer cancel()
	ms, err := f.client.ListActive(ctx, f.app)
	if f.report("machines: ListActive", err) && len(ms) != 1 {
		f.report("machines: ListActive has the machine", fmt.Errorf("got %d machines, want 1", len(ms)))
	}
	ms, _, err = f.client.ListFlyAppsMachines(ctx, f.app)
	if f.report("machines: ListFlyAppsMachines", err) && len(ms) != 1 {
		f.report("machines: ListFlyAppsMachines has the machine", fmt.Errorf("got %d machines, want 1", len(ms)))
	}
}

// metadata sets, reads and deletes one key (flaps sends no nonce here even
// though this flow holds the lease, like flyctl).
func (f *machineFlow) metadata() {
	ctx, cancel := f.stepCtx(30 * time.Second)
	defer cancel()
	f.report("machines: SetMetadata", f.client.SetMetadata(ctx, f.app, f.id, "flygo_key", "v1"))
	md, err := f.client.GetMetadata(ctx, f.app, f.id)
	if f.report("machines: GetMetadata", err) {
		var c checks
		c.equal("flygo_key", md["flygo_key"], "v1")
		c.equal("compat", md["compat"], "flygo")
		f.verify("machines: GetMetadata has set and launch keys", c)
	}
	f.report("machines: DeleteMetadata", f.client.DeleteMetadata(ctx, f.app, f.id, "flygo_key"))
	md, err = f.client.GetMetadata(ctx, f.app, f.id)
	if err == nil && md["flygo_key"] != "" {
		err = errors.New("flygo_key still present after DeleteMetadata")
	}
	f.report("machines: GetMetadata after DeleteMetadata", err)
}

func (f *machineFlow) cordon() {
	ctx, cancel := f.stepCtx(30 * time.Second)
	defer cancel()
	if f.report("machines: Cordon (nonce)", f.client.Cordon(ctx, f.app, f.id, f.nonce)) {
		f.report("machines: Get shows cordoned=true", f.expectCordoned(true))
	}
	if f.report("machines: Uncordon (nonce)", f.client.Uncordon(ctx, f.app, f.id, f.nonce)) {
		f.report("machines: Get shows cordoned=false", f.expectCordoned(false))
	}
}

func (f *machineFlow) expectCordoned(want bool) error {
	ctx, cancel := f.stepCtx(30 * time.Second)
	defer cancel()
	m, err := f.client.Get(ctx, f.app, f.id)
	if err == nil && m.Cordoned != want {
		err = fmt.Errorf("cordoned = %t, want %t", m.Cordoned, want)
	}
	return err
}

// restart is `fly machine restart`: POST .../restart?force_stop=false&timeout=10s.
func (f *machineFlow) restart() {
	ctx, cancel := f.stepCtx(60 * time.Second)
	defer cancel()
	in := fly.RestartMachineInput{ID: f.id, Timeout: 10 * time.Second}
	f.report("machines: Restart (?force_stop=false&timeout=10s, nonce)", f.client.Restart(ctx, f.app, in, f.nonce))
}

func (f *machineFlow) ps() {
	ctx, cancel := f.stepCtx(30 * time.Second)
	defer cancel()
	ps, err := f.client.GetProcesses(ctx, f.app, f.id)
	if f.report("machines: GetProcesses (ps)", err) {
		f.verify("machines: GetProcesses fields (ProcessStat)", checkProcesses(ps))
	}
}

// waitTwoStates waits with a repeated state= parameter (fly-go encodes a
// []string as state=started&state=stopped).
func (f *machineFlow) waitTwoStates() {
	ctx, cancel := f.stepCtx(40 * time.Second)
	defer cancel()
	err := f.client.Wait(ctx, f.app, f.id, flaps.WithWaitStates("started", "stopped"), flaps.WithWaitTimeout(10*time.Second))
	f.report("machines: Wait with two states (state=started&state=stopped)", err)
}

func (f *machineFlow) releaseLease() {
	ctx, cancel := f.stepCtx(30 * time.Second)
	defer cancel()
	if f.report("machines: ReleaseLease (nonce)", f.client.ReleaseLease(ctx, f.app, f.id, f.nonce)) {
		f.nonce = ""
	}
}

// kill is `fly machine kill`: POST .../signal {"signal": 9} (an integer).
func (f *machineFlow) kill() {
	ctx, cancel := f.stepCtx(30 * time.Second)
	defer cancel()
	f.report(`machines: Kill ({"signal": 9})`, f.client.Kill(ctx, f.app, f.id))
}

func (f *machineFlow) destroy() {
	ctx, cancel := f.stepCtx(60 * time.Second)
	defer cancel()
	in := fly.RemoveMachineInput{ID: f.id, Kill: true}
	f.report("machines: Destroy (?kill=true)", f.client.Destroy(ctx, f.app, in, f.nonce))
}

// waitDestroyed is flyctl's WaitForState(destroyed), which accepts a 404.
func (f *machineFlow) waitDestroyed() {
	ctx, cancel := f.stepCtx(70 * time.Second)
	defer cancel()
	err := f.client.Wait(ctx, f.app, f.id, flaps.WithWaitStates(fly.MachineStateDestroyed), flaps.WithWaitTimeout(30*time.Second))
	if isNotFound(err) {
		err = nil
	}
	f.report("machines: Wait after Destroy (state=destroyed)", err)
}

func (f *machineFlow) listAfterDestroy() {
	ctx, cancel := f.stepCtx(30 * time.Second)
	defer cancel()
	ms, err := f.client.List(ctx, f.app, "")
	if err == nil {
		for _, m := range ms {
			if m.ID == f.id && m.IsActive() {
				err = fmt.Errorf("machine %s still listed with state %q", m.ID, m.State)
			}
		}
	}
	f.report("machines: List after Destroy shows none (or destroyed)", err)
}
