//! Supervision groups: supervisors over actor deployments, nested in a
//! tree, as Erlang/OTP's supervisors over their children.
//!
//! Each actor deployment supervises its own instances ([`crate::Actors`]).
//! A [`GroupSpec`] puts deployments (by component name) and other groups in
//! an ordered group with a strategy and an intensity of its own. When an
//! instance of a child breaks (its own supervisor restarts that instance),
//! the group restarts, by its strategy, nothing more (`one-for-one`), every
//! other child (`one-for-all`) or the children after it (`rest-for-one`);
//! restarting a child that is a group restarts every deployment under it.
//! A group whose restarts pass its intensity gives up: its parent treats it
//! as a child that broke (restarting everything under it, by the parent's
//! strategy), and a group with no parent fails every deployment under it
//! (each recorded `failed` and audited, as when its own restarts pass the
//! intensity).
//!
//! A restart a group asks of a deployment does not count against the
//! deployment's own intensity, and is not reported back as a break.

use std::collections::{HashMap, VecDeque};
use std::sync::Weak;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::messenger::Routes;
use crate::{Error, Result, Supervision};

/// One supervision group, as declared (a manifest's `[[supervisor]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    /// Its name (children of other groups name it).
    pub name: String,
    /// Which children restart when one breaks.
    pub strategy: Supervision,
    /// Its children in order: component names (actor deployments) or
    /// group names.
    pub children: Vec<String>,
    /// Restarts allowed within the window before the group gives up.
    pub max_restarts: u32,
    /// The window restarts are counted in.
    pub restart_window: Duration,
}

/// The groups, checked: unique names, each child under one group at most,
/// no group under itself.
pub(crate) struct Tree {
    groups: HashMap<String, (GroupSpec, VecDeque<Instant>)>,
    /// Each child's group.
    parent: HashMap<String, String>,
}

impl Tree {
    pub(crate) fn new(specs: Vec<GroupSpec>) -> Result<Self> {
        let mut groups = HashMap::new();
        let mut parent = HashMap::new();
        for spec in specs {
            if spec.children.is_empty() {
                return Err(Error::Invalid(format!(
                    "supervisor `{}` has no children; name the components (or supervisors) it supervises",
                    spec.name
                )));
            }
            for child in &spec.children {
                if let Some(other) = parent.insert(child.clone(), spec.name.clone()) {
                    if other == spec.name {
                        return Err(Error::Invalid(format!(
                            "supervisor `{other}` names `{child}` twice"
                        )));
                    }
                    return Err(Error::Invalid(format!(
                        "`{child}` is a child of both supervisor `{other}` and supervisor `{}`; a child has one supervisor",
                        spec.name
                    )));
                }
            }
            let name = spec.name.clone();
            if groups
                .insert(name.clone(), (spec, VecDeque::new()))
                .is_some()
            {
                return Err(Error::Invalid(format!(
                    "two supervisors are named `{name}`"
                )));
            }
        }
        for name in groups.keys() {
            let mut at = name.clone();
            let mut seen = 0;
            while let Some(p) = parent.get(&at) {
                seen += 1;
                if p == name || seen > groups.len() {
                    return Err(Error::Invalid(format!(
                        "supervisor `{name}` is under itself; supervisors form a tree"
                    )));
                }
                at = p.clone();
            }
        }
        Ok(Self { groups, parent })
    }

    /// The deployments (component names) at or under `child`.
    fn leaves(&self, child: &str) -> Vec<String> {
        match self.groups.get(child) {
            None => vec![child.to_string()],
            Some((spec, _)) => spec.children.iter().flat_map(|c| self.leaves(c)).collect(),
        }
    }

    /// What to do now that `child` broke: the deployments to restart, or
    /// those to fail (with the reason).
    fn broke(&mut self, child: &str) -> Action {
        let mut child = child.to_string();
        // A child that is a group gave up: restart everything under it.
        let mut gave_up: Option<String> = None;
        loop {
            let Some(group) = self.parent.get(&child).cloned() else {
                return match gave_up {
                    None => Action::Restart(Vec::new()),
                    Some(reason) => Action::Fail(self.leaves(&child), reason),
                };
            };
            let Some((spec, window)) = self.groups.get_mut(&group) else {
                return Action::Restart(Vec::new());
            };
            let now = Instant::now();
            while window
                .front()
                .is_some_and(|t| now.duration_since(*t) > spec.restart_window)
            {
                window.pop_front();
            }
            window.push_back(now);
            if window.len() > spec.max_restarts as usize {
                window.clear();
                gave_up = Some(format!(
                    "supervisor `{group}`: more than {} restarts within {}",
                    spec.max_restarts,
                    humantime::format_duration(spec.restart_window)
                ));
                tracing::warn!(supervisor = %group, "supervision group gave up");
                child = group;
                continue;
            }
            let position = spec.children.iter().position(|c| *c == child);
            let spec = spec.clone();
            let restart: Vec<&String> = match spec.strategy {
                Supervision::OneForOne => Vec::new(),
                Supervision::OneForAll => spec.children.iter().filter(|c| **c != child).collect(),
                Supervision::RestForOne => spec
                    .children
                    .iter()
                    .skip(position.map_or(spec.children.len(), |p| p + 1))
                    .collect(),
            };
            let mut leaves: Vec<String> =
                restart.into_iter().flat_map(|c| self.leaves(c)).collect();
            // A group that gave up restarts whole, whatever the strategy.
            if gave_up.is_some() {
                leaves.extend(self.leaves(&child));
            }
            tracing::info!(supervisor = %group, child = %child, restarting = ?leaves, "supervision group restarts");
            return Action::Restart(leaves);
        }
    }
}

enum Action {
    Restart(Vec<String>),
    Fail(Vec<String>, String),
}

/// Run `tree`: each name received is a deployment one of whose instances
/// broke; the deployments to restart or fail are found through `routes`.
pub(crate) fn spawn(mut tree: Tree, routes: Weak<Routes>) -> mpsc::UnboundedSender<String> {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(broke) = rx.recv().await {
            let action = tree.broke(&broke);
            let Some(routes) = routes.upgrade() else {
                return;
            };
            let actors = |names: &[String]| -> Vec<crate::Actors> {
                let routes = routes
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                names
                    .iter()
                    .filter_map(|n| routes.get(n)?.current()?.actors)
                    .collect()
            };
            match action {
                Action::Restart(names) => {
                    for a in actors(&names) {
                        a.restart_all().await;
                    }
                }
                Action::Fail(names, reason) => {
                    for a in actors(&names) {
                        a.fail(reason.clone()).await;
                    }
                }
            }
        }
    });
    tx
}
