//! The deploy's steps on machines: create one, update a group's batch by batch, a canary,
//! bluegreen's new machines and the retiring of the old ones, a roll-back; each machine leased
//! while it changes and waited for until it is started and passing its checks. What changed is
//! remembered, for a roll-back to undo.

use super::leases::Held;
use super::plan::check_count;
use super::report::Step;
use crate::machine::{Scope, WaitFailure};
use aloft_types::api::{CreateMachineRequest, LeaseRequest, UpdateMachineRequest};
use aloft_types::machine::CheckState;
use aloft_types::{Machine, MachineConfig, MachineState};
use anyhow::{Context, Result, anyhow, bail};
use std::time::{Duration, Instant};

/// A machine the deploy updated, and the config it had.
struct Changed {
    id: String,
    group: String,
    previous: MachineConfig,
}

/// A deploy under way: where it works, and what it did so far.
pub(super) struct Deploy<'a> {
    pub(super) scope: &'a Scope,
    held: Held,
    wait: Duration,
    /// Each lease's length; refreshed by [`super::leases::keep_leases`] while held.
    lease_ttl: Duration,
    quiet: bool,
    /// What happened to each machine, for the report.
    pub(super) steps: Vec<Step>,
    /// What a roll-back undoes.
    changed: Vec<Changed>,
    created: Vec<String>,
    /// bluegreen's old machines (group, id), retired once every group passed.
    blue: Vec<(String, String)>,
    /// Volumes given to machines of this deploy (not mounted yet, so not shown as attached).
    volumes_taken: Vec<String>,
}

impl<'a> Deploy<'a> {
    /// A deploy in `scope` with nothing done yet: leases of `lease_ttl` kept in `held`, `wait`
    /// for each machine to start and pass its checks, nothing printed when `quiet`.
    pub(super) fn new(
        scope: &'a Scope,
        held: Held,
        wait: Duration,
        lease_ttl: Duration,
        quiet: bool,
    ) -> Self {
        Self {
            scope,
            held,
            wait,
            lease_ttl,
            quiet,
            steps: Vec::new(),
            changed: Vec::new(),
            created: Vec::new(),
            blue: Vec::new(),
            volumes_taken: Vec::new(),
        }
    }

    pub(super) fn say(&self, line: String) {
        if !self.quiet {
            println!("{line}");
        }
    }

    /// Creates a machine of the group (remembered for a roll-back to destroy); its id.
    async fn launch(
        &mut self,
        group: &str,
        config: &MachineConfig,
        region: Option<String>,
    ) -> Result<String> {
        let mut config = config.clone();
        self.give_volume(&mut config, None, region.as_deref())
            .await?;
        let req = CreateMachineRequest {
            config,
            name: None,
            region,
            skip_launch: false,
            lease_ttl: None,
            skip_service_registration: false,
        };
        let created = self
            .scope
            .client
            .create_machine(&self.scope.app, &req)
            .await
            .with_context(|| format!("creating a machine for process group `{group}`"))?;
        self.say(format!(
            "  {group}: created machine {} in {}",
            created.id, created.region
        ));
        let id = created.id.to_string();
        self.created.push(id.clone());
        // Its image's pull, as `machine run` shows it (on stderr).
        crate::machine::follow_pull(self.scope, &id).await?;
        Ok(id)
    }

    pub(super) async fn create(
        &mut self,
        group: &str,
        config: MachineConfig,
        region: Option<String>,
    ) -> Result<()> {
        let id = self.launch(group, &config, region).await?;
        let m = self.healthy(&id).await?;
        self.record(group, "created", &m);
        Ok(())
    }

    /// Updates the group's machines a batch at a time: a batch's machines change together, and
    /// each must be started and passing its checks before the next batch.
    pub(super) async fn update(
        &mut self,
        group: &str,
        config: &MachineConfig,
        batches: &[Vec<Machine>],
    ) -> Result<()> {
        let total: usize = batches.iter().map(Vec::len).sum();
        let mut done = 0;
        for chunk in batches {
            let mut leased = Vec::new();
            let mut result = Ok(());
            for m in chunk {
                match self.lease(&m.id.to_string()).await {
                    Ok(nonce) => leased.push((m, nonce)),
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            if result.is_ok() {
                for (m, nonce) in &leased {
                    done += 1;
                    let id = m.id.to_string();
                    self.say(format!("  {group}: updating machine {id} ({done}/{total})"));
                    let mut config = config.clone();
                    if let Err(e) = self
                        .give_volume(&mut config, Some(m), Some(&m.region))
                        .await
                    {
                        result = Err(e);
                        break;
                    }
                    let req = new_config(config);
                    if let Err(e) = self
                        .scope
                        .client
                        .update_machine(&self.scope.app, &id, &req, nonce)
                        .await
                    {
                        result = Err(anyhow::Error::from(e)
                            .context(format!("updating machine {id} ({group})")));
                        break;
                    }
                    self.changed.push(Changed {
                        id,
                        group: group.to_string(),
                        previous: m.config.clone(),
                    });
                }
            }
            if result.is_ok() {
                for (m, _) in &leased {
                    match self.healthy(&m.id.to_string()).await {
                        Ok(m) => self.record(group, "updated", &m),
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
            }
            for (m, nonce) in &leased {
                self.release(&m.id.to_string(), nonce).await;
            }
            result?;
        }
        Ok(())
    }

    /// Fills in the volume of `config`'s mount (`[[mounts]]` names it, the machine needs its
    /// own): the one `machine` mounts already, else a free one of that name in `region`, else a
    /// new one.
    async fn give_volume(
        &mut self,
        config: &mut MachineConfig,
        machine: Option<&Machine>,
        region: Option<&str>,
    ) -> Result<()> {
        let Some(mount) = config.mounts.first_mut().filter(|m| m.volume.is_empty()) else {
            return Ok(());
        };
        if let Some(current) = machine.and_then(|m| m.config.mounts.first()) {
            mount.volume = current.volume.clone();
            return Ok(());
        }
        let name = mount.name.clone().unwrap_or_else(|| "data".into());
        let region = region.ok_or_else(|| {
            anyhow!(
                "a machine with volume `{name}` needs a region to put the volume in: set primary_region in the config or pass --region"
            )
        })?;
        let v = crate::volumes::volume_for(
            &self.scope.client,
            &self.scope.app,
            &name,
            region,
            mount.size_gb.unwrap_or(1),
            &self.volumes_taken,
            self.quiet,
        )
        .await?;
        self.volumes_taken.push(v.id.clone());
        mount.volume = v.id;
        Ok(())
    }

    /// `bluegreen`: a new machine beside each of the group's (same region), all started and
    /// passing their checks before any old one goes; then the old ones are cordoned, stopped and
    /// destroyed. Until then a failure only has new machines to destroy.
    pub(super) async fn blue_green(
        &mut self,
        group: &str,
        config: &MachineConfig,
        machines: &[Machine],
    ) -> Result<()> {
        let mut green = Vec::new();
        for m in machines {
            let id = self.launch(group, config, Some(m.region.clone())).await?;
            self.say(format!("  {group}: green machine {id} beside {}", m.id));
            green.push(id);
        }
        for id in &green {
            let m = self.healthy(id).await?;
            self.record(group, "created", &m);
        }
        // The old ones go once every group's new machines serve (a later group's failure rolls
        // this one back too).
        self.blue.extend(
            machines
                .iter()
                .map(|m| (group.to_string(), m.id.to_string())),
        );
        Ok(())
    }

    /// After every group passed: the release is committed, and the blue machines go (cordoned
    /// first, so they take no request with them); one that will not go is only a warning.
    pub(super) async fn retire_blue(&mut self) {
        self.created.clear();
        for (group, id) in std::mem::take(&mut self.blue) {
            match self.scope.retire(&id).await {
                Ok(()) => self.say(format!("  {group}: blue machine {id} destroyed")),
                Err(e) => eprintln!(
                    "Warning: destroying blue machine {id}: {e:#} (the new machines serve; destroy it with `aloft machine destroy {id} -a {} --force`)",
                    self.scope.app
                ),
            }
        }
    }

    /// `canary`: one new machine with the new config in `region`, started and passing its
    /// checks, then destroyed; the rolling update follows.
    pub(super) async fn canary(
        &mut self,
        group: &str,
        config: &MachineConfig,
        region: &str,
    ) -> Result<()> {
        let id = self.launch(group, config, Some(region.to_string())).await?;
        self.say(format!("  {group}: canary machine {id} in {region}"));
        self.healthy(&id).await?;
        self.scope.retire(&id).await?;
        self.created.retain(|c| *c != id);
        self.say(format!(
            "  {group}: canary {id} passed and is gone; rolling on"
        ));
        Ok(())
    }

    /// Puts every machine the deploy changed back to its previous config (each started before
    /// the next) and destroys the ones it created.
    pub(super) async fn roll_back(&mut self) -> Result<()> {
        let changed = std::mem::take(&mut self.changed);
        let mut problems = Vec::new();
        for c in changed.iter().rev() {
            let restored = async {
                let nonce = self.lease(&c.id).await?;
                let req = new_config(c.previous.clone());
                let updated = self
                    .scope
                    .client
                    .update_machine(&self.scope.app, &c.id, &req, &nonce)
                    .await
                    .map_err(anyhow::Error::from);
                let result = match updated {
                    Ok(_) => self.healthy(&c.id).await.map(drop),
                    Err(e) => Err(e),
                };
                self.release(&c.id, &nonce).await;
                result
            };
            match restored.await {
                Ok(()) => self.say(format!(
                    "  {}: machine {} is back on the previous release",
                    c.group, c.id
                )),
                Err(e) => problems.push(format!("machine {}: {e:#}", c.id)),
            }
        }
        for id in std::mem::take(&mut self.created) {
            match self
                .scope
                .client
                .destroy_machine(&self.scope.app, &id, true)
                .await
            {
                Ok(_) => self.say(format!(
                    "  destroyed machine {id}, which the release created"
                )),
                Err(e) => problems.push(format!("destroying machine {id}: {e}")),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("{}", problems.join("; "))
        }
    }

    /// Takes the machine's lease (for as long as a wait may take) and remembers it for Ctrl-C.
    async fn lease(&self, id: &str) -> Result<String> {
        let req = LeaseRequest {
            ttl: Some(self.lease_ttl.as_secs()),
            description: Some("aloft deploy".into()),
        };
        let lease = self
            .scope
            .client
            .acquire_lease(&self.scope.app, id, &req, None)
            .await
            .with_context(|| {
                format!(
                    "taking machine {id}'s lease (another deploy or command holds it? `aloft machine leases view {id} -a {}` shows who)",
                    self.scope.app
                )
            })?;
        self.held
            .lock()
            .push((id.to_string(), lease.data.nonce.clone()));
        Ok(lease.data.nonce)
    }

    async fn release(&self, id: &str, nonce: &str) {
        self.held.lock().retain(|(held, _)| held != id);
        if let Err(e) = self
            .scope
            .client
            .release_lease(&self.scope.app, id, nonce)
            .await
        {
            eprintln!("Warning: releasing machine {id}'s lease: {e} (it expires on its own)");
        }
    }

    /// Waits for the machine to be started and its checks to pass.
    pub(super) async fn healthy(&self, id: &str) -> Result<Machine> {
        let started = Instant::now();
        let machine = match self
            .scope
            .await_state(id, MachineState::Started, self.wait)
            .await
        {
            Ok(m) => m,
            Err(WaitFailure::NotReached(m)) => bail!(
                "machine {id} is {} after {}s, not started: see `aloft logs -a {} -m {id}`",
                m.state.as_str(),
                started.elapsed().as_secs(),
                self.scope.app
            ),
            Err(WaitFailure::Error(e)) => return Err(e),
        };
        // Every check of the config has to report passing (one not run yet counts as failing).
        let expected = check_count(&machine.config);
        let mut machine = machine;
        loop {
            let mut failing: Vec<&str> = machine
                .checks
                .iter()
                .filter(|c| c.status != CheckState::Passing)
                .map(|c| c.name.as_str())
                .collect();
            if machine.checks.len() < expected {
                failing.push("(not run yet)");
            }
            if failing.is_empty() {
                self.say(format!(
                    "    machine {id} is started{} ({:.1}s)",
                    if machine.checks.is_empty() {
                        ""
                    } else {
                        ", checks passing"
                    },
                    started.elapsed().as_secs_f64()
                ));
                return Ok(machine);
            }
            if started.elapsed() >= self.wait {
                bail!(
                    "machine {id}'s checks did not pass within {}s (failing: {}): see `aloft machine status {id} -a {}`",
                    self.wait.as_secs(),
                    failing.join(", "),
                    self.scope.app
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            machine = self.scope.client.get_machine(&self.scope.app, id).await?;
        }
    }

    fn record(&mut self, group: &str, action: &'static str, m: &Machine) {
        self.steps.push(Step {
            id: m.id.to_string(),
            group: group.to_string(),
            region: m.region.clone(),
            action,
            state: m.state,
        });
    }
}

/// An update to `config` that leaves everything else as it is.
fn new_config(config: MachineConfig) -> UpdateMachineRequest {
    UpdateMachineRequest {
        config,
        name: None,
        region: None,
        skip_launch: false,
        current_version: None,
        lease_ttl: None,
        skip_service_registration: false,
    }
}
