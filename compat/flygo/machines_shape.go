package main

import (
	"errors"
	"time"

	fly "github.com/superfly/fly-go"
	"github.com/superfly/fly-go/flaps"
)

// checkVersion: `version` is the machine's version (aloft's instance_id), and a machine whose
// host answers has its whole config, so no incomplete_config.
func checkVersion(c *checks, m *fly.Machine) {
	c.nonEmpty("version", m.Version)
	c.equal("version", m.Version, m.InstanceID)
	c.equal("host_status", m.HostStatus, fly.HostStatusOk)
	if m.IncompleteConfig != nil {
		c.add("incomplete_config is set although host_status is ok")
	}
	if m.GetConfig() != m.Config {
		c.add("GetConfig() is not config")
	}
}

// checkProcesses judges fly-go's ProcessStat fields of `GET .../ps`.
func checkProcesses(ps fly.MachinePsResponse) checks {
	var c checks
	if len(ps) == 0 {
		c.add("no processes in a started machine")
		return c
	}
	now := uint64(time.Now().Unix())
	for _, p := range ps {
		if p.Pid <= 0 {
			c.add("pid %d", p.Pid)
		}
		if p.Stime == 0 || p.Stime > now+60 || p.Stime+24*3600 < now {
			c.add("stime %d is not a start time in Unix seconds (now %d)", p.Stime, now)
		}
		if p.Rtime > now-p.Stime+60 {
			c.add("rtime %d is longer than since stime", p.Rtime)
		}
		c.nonEmpty("command", p.Command)
		c.nonEmpty("directory", p.Directory)
		if p.Rss == 0 {
			c.add("rss is 0 for pid %d", p.Pid)
		}
		if p.ListenSockets == nil {
			c.add("listen_sockets is missing for pid %d", p.Pid)
		}
	}
	return c
}

// exitEvent reads the exit event a Stop left (fly-go's MachineExitEvent), newest first.
func (f *machineFlow) exitEvent() {
	ctx, cancel := f.stepCtx(30 * time.Second)
	defer cancel()
	m, err := f.client.Get(ctx, f.app, f.id)
	if !f.report("machines: Get after Stop", err) {
		return
	}
	var c checks
	var exit *fly.MachineExitEvent
	for _, e := range m.Events {
		if e.Type == "exit" && e.Request != nil {
			exit = e.Request.ExitEvent
			break
		}
	}
	if exit == nil {
		c.add("no exit event with request.exit_event among %d events", len(m.Events))
		f.verify("machines: the exit event of a Stop", c)
		return
	}
	c.equal("requested_stop", exit.RequestedStop, true)
	c.equal("restarting", exit.Restarting, false)
	c.equal("signal", exit.Signal, 15) // SIGTERM, the default stop signal
	c.equal("guest_signal", exit.GuestSignal, exit.Signal)
	c.equal("guest_exit_code", exit.GuestExitCode, exit.ExitCode)
	if exit.ExitedAt.IsZero() || time.Since(exit.ExitedAt) > 10*time.Minute {
		c.add("exited_at %v is not the time of the stop", exit.ExitedAt)
	}
	f.verify("machines: the exit event of a Stop (guest_exit_code, guest_signal, restarting)", c)
}

// launchPreset launches a machine of a size preset (fly-go's SetSize, as `fly machine run
// --vm-size` does): it is created (then destroyed), or refused for lack of room with the
// reference's `insufficient_capacity` code (flaps then suggests another region), never as an
// invalid size.
func (f *machineFlow) launchPreset(size string) {
	ctx, cancel := f.stepCtx(60 * time.Second)
	defer cancel()
	in := f.launchInput()
	in.Config.Guest = &fly.MachineGuest{}
	step := "machines: Launch with the " + size + " preset"
	if err := in.Config.Guest.SetSize(size); err != nil {
		f.report(step, err)
		return
	}
	in.SkipLaunch = true
	m, err := f.client.Launch(ctx, f.app, in)
	if err == nil {
		destroy := fly.RemoveMachineInput{ID: m.ID, Kill: true}
		f.report(step+" (created)", f.client.Destroy(ctx, f.app, destroy, ""))
		return
	}
	var fe *flaps.FlapsError
	code := flaps.GetErrorStatusCode(err)
	switch {
	case !errors.As(err, &fe) || code == nil:
		f.report(step, err)
	case *code != "insufficient_capacity" || fe.Suggestion() == "":
		f.report(step, errors.New("refused, but not for capacity (status "+string(*code)+"): "+describe(err)))
	default:
		f.report(step+" (no room here: status insufficient_capacity)", nil)
	}
}
