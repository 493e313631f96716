//! The alert manager: what happens to an alert between its detector and a person.
//!
//! 1. **Tier.** Every alert gets a tier (info, low, medium, high, critical) from its 0–100
//!    score and the cut-offs of its desk, else of its rule, else the defaults
//!    ([`crate::config::TierCutoffs`]).
//! 2. **Grouping.** The first alert of a rule on a key (rule, instrument, account) opens a
//!    group for a horizon of event time (`alerts.group_horizon`, per rule or desk). Later
//!    alerts of the key inside the horizon fold into the group: they are recorded with the
//!    group's id and not sent, unless one raises the highest tier sent so far for the group,
//!    which is sent at once (an escalating pattern must not wait for the horizon). When the
//!    horizon closes, a group of more than one alert is summarised ([`AlertGroup`]: count,
//!    first and last time, highest score and tier, the occurrences) and the summary is sent.
//! 3. **Routing.** What is sent goes to every route whose tiers, rules and desks match.
//!
//! Every alert is still written (with its tier and group) to `alerts.jsonl` and to the audit
//! trail: grouping decides what a person is sent, never what is kept.
//!
//! The manager processes each key's alerts in event-time order, ties broken by alert id, on
//! the worker that owns the key, so its decisions are the same on any number of workers and
//! for a replay of the same input.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use surveil_operators::{Emitter, ProcessInTimeOrder, TimeOrderedProcessor, route};
use timely::dataflow::Stream;

use crate::config::{AlertsConfig, TierCutoffs};
use crate::model::{Alert, AlertGroup, AlertId, Report, Routes, Symbol, Tier, TriagedAlert};
use crate::reference::ReferenceData;

/// One route, ready to match.
#[derive(Clone, Debug)]
struct Route {
    tiers: u8,
    rules: Option<HashSet<String>>,
    desks: Option<HashSet<Symbol>>,
}

/// The tier cut-offs and grouping horizon that apply to one alert.
#[derive(Clone, Copy, Debug)]
struct Policy {
    cutoffs: TierCutoffs,
    horizon: u64,
}

/// What an override sets; what it leaves out comes from the next level.
#[derive(Clone, Copy, Debug, Default)]
struct Override {
    cutoffs: Option<TierCutoffs>,
    horizon: Option<u64>,
}

/// The alert manager's configuration, resolved against the reference data (for desks).
#[derive(Clone, Debug)]
pub struct AlertPolicy {
    default: Policy,
    by_rule: HashMap<String, Override>,
    by_desk: HashMap<Symbol, Override>,
    routes: Vec<Route>,
    route_names: Vec<String>,
    max_listed: usize,
    correction_horizon: u64,
    reference: Arc<ReferenceData>,
}

impl AlertPolicy {
    /// The policy of `config`; desks are found through `reference`. The configuration is
    /// assumed valid ([`crate::config::Config::validate`]); unknown tier names in a route are
    /// ignored.
    pub fn new(config: &AlertsConfig, reference: Arc<ReferenceData>) -> AlertPolicy {
        let default = Policy { cutoffs: config.tiers, horizon: crate::config::nanos_of(config.group_horizon) };
        let over = |o: &crate::config::AlertPolicyOverride| Override {
            cutoffs: o.tiers,
            horizon: o.group_horizon.map(crate::config::nanos_of),
        };
        let by_rule = config.rules.iter().map(|(name, o)| (name.clone(), over(o))).collect();
        let by_desk = config.desks.iter().map(|(name, o)| (Symbol::of(name.as_bytes()), over(o))).collect();
        let routes = config
            .routes
            .iter()
            .map(|r| Route {
                tiers: r.tiers.iter().filter_map(|t| Tier::parse(t)).fold(0, |bits, t| bits | t.bit()),
                rules: (!r.rules.is_empty()).then(|| r.rules.iter().cloned().collect()),
                desks: (!r.desks.is_empty()).then(|| r.desks.iter().map(|d| Symbol::of(d.as_bytes())).collect()),
            })
            .collect();
        AlertPolicy {
            default,
            by_rule,
            by_desk,
            routes,
            route_names: config.routes.iter().map(|r| r.name.clone()).collect(),
            max_listed: config.max_listed,
            correction_horizon: crate::config::nanos_of(config.correction_horizon),
            reference,
        }
    }

    /// The routes' names, by index.
    pub fn route_names(&self) -> &[String] {
        &self.route_names
    }

    /// The desk of `account` at event time `time`, from the reference data.
    pub fn desk_of(&self, account: Symbol, time: u64) -> Symbol {
        self.reference.account(account, time).map(|a| a.desk).unwrap_or(Symbol::NONE)
    }

    /// The firm of `account` at event time `time`, from the reference data.
    pub fn firm_of(&self, account: Symbol, time: u64) -> Symbol {
        self.reference.account(account, time).map(|a| a.firm).unwrap_or(Symbol::NONE)
    }

    /// The desk of an alert's account: from the reference data, else as the alert's own
    /// evidence names it (events may carry their desk when no account file is loaded).
    pub fn desk_of_alert(&self, alert: &Alert) -> Symbol {
        let desk = self.desk_of(alert.account, alert.time);
        if !desk.is_none() || alert.account.is_none() {
            return desk;
        }
        alert
            .evidence
            .iter()
            .find(|e| e.account == alert.account && !e.desk.is_none())
            .map(|e| e.desk)
            .unwrap_or(Symbol::NONE)
    }

    /// Field by field: the desk's setting, else the rule's, else the default.
    fn policy(&self, rule: &str, desk: Symbol) -> Policy {
        let desk = self.by_desk.get(&desk).copied().unwrap_or_default();
        let rule = self.by_rule.get(rule).copied().unwrap_or_default();
        Policy {
            cutoffs: desk.cutoffs.or(rule.cutoffs).unwrap_or(self.default.cutoffs),
            horizon: desk.horizon.or(rule.horizon).unwrap_or(self.default.horizon),
        }
    }

    /// The tier of an alert of `rule` with `score` on an account of `desk`.
    pub fn tier(&self, rule: &str, desk: Symbol, score: f64) -> Tier {
        self.policy(rule, desk).cutoffs.tier(score)
    }

    /// The grouping horizon (ns of event time; 0 = no grouping) for `rule` on `desk`.
    pub fn horizon(&self, rule: &str, desk: Symbol) -> u64 {
        self.policy(rule, desk).horizon
    }

    /// The routes a notice of `rule` at `tier` about `desk` is sent on.
    pub fn routes(&self, rule: &str, tier: Tier, desk: Symbol) -> Routes {
        let mut routes = Routes::default();
        for (i, route) in self.routes.iter().enumerate() {
            let matches = route.tiers & tier.bit() != 0
                && route.rules.as_ref().is_none_or(|r| r.contains(rule))
                && route.desks.as_ref().is_none_or(|d| d.contains(&desk));
            if matches {
                routes.0 |= 1 << i;
            }
        }
        routes
    }
}

/// The key repeats are grouped by.
type GroupKey = (String, Symbol, Symbol);

/// An open group and the highest tier sent for it so far.
struct OpenGroup {
    group: AlertGroup,
    sent: Option<Tier>,
}

/// What the manager decided about an alert, kept for its corrections.
#[derive(Clone, Copy, Debug)]
struct Decided {
    group: AlertId,
    tier: Tier,
    routes: Routes,
}

/// The manager's per-worker state: a [`TimeOrderedProcessor`] of alerts, for
/// [`ManageAlerts::manage_alerts`] or a batch replay.
pub struct AlertManager {
    policy: Arc<AlertPolicy>,
    open: HashMap<GroupKey, OpenGroup>,
    closing: BTreeSet<(u64, GroupKey)>,
    /// Recent alerts' decisions, for `correction_horizon`, and when each is forgotten.
    decided: HashMap<AlertId, Decided>,
    forgetting: VecDeque<(u64, AlertId)>,
}

impl AlertManager {
    /// A manager applying `policy`.
    pub fn new(policy: Arc<AlertPolicy>) -> AlertManager {
        AlertManager {
            policy,
            open: HashMap::new(),
            closing: BTreeSet::new(),
            decided: HashMap::new(),
            forgetting: VecDeque::new(),
        }
    }

    fn remember(&mut self, time: u64, triaged: &TriagedAlert) {
        let horizon = self.policy.correction_horizon;
        if horizon == 0 {
            return;
        }
        let decided = Decided { group: triaged.group, tier: triaged.tier, routes: triaged.routes };
        let known = self.decided.insert(triaged.alert.id, decided).is_some();
        if !known {
            self.forgetting.push_back((time.saturating_add(horizon), triaged.alert.id));
        }
    }

    fn forget_before(&mut self, time: u64) {
        while let Some(&(until, id)) = self.forgetting.front()
            && until < time
        {
            self.forgetting.pop_front();
            self.decided.remove(&id);
        }
    }

    /// A detector's correction of an alert: it joins the alert's group (and so its case), and
    /// goes where the alert went, and further when it raises the tier above what the group
    /// has sent.
    fn on_correction(&mut self, alert: Alert, out: &mut Emitter<'_, Report>) {
        let policy = self.policy.clone();
        let desk = policy.desk_of_alert(&alert);
        let firm = policy.firm_of(alert.account, alert.time);
        let retracted = alert.is_retracted();
        let tier = if retracted { Tier::Info } else { policy.tier(&alert.rule, desk, alert.score) };
        let known = self.decided.get(&alert.id).copied().unwrap_or_else(|| {
            // Forgotten: what the alert's own score gave it.
            let raised = alert.correction.as_ref().map_or(alert.score, |c| c.raised_score);
            let prior = policy.tier(&alert.rule, desk, raised);
            Decided { group: alert.id, tier: prior, routes: policy.routes(&alert.rule, prior, desk) }
        });
        let mut routes = known.routes;
        let key: GroupKey = (alert.rule.clone(), alert.instrument, alert.account);
        let open = self.open.get_mut(&key).filter(|o| o.group.id == known.group);
        let higher = match &open {
            Some(o) => o.sent.is_none_or(|sent| tier > sent),
            None => tier > known.tier,
        };
        if !retracted && higher {
            let more = policy.routes(&alert.rule, tier, desk);
            routes = Routes(routes.0 | more.0);
        }
        let triaged = TriagedAlert::new(alert, tier, desk, known.group, routes).with_firm(firm).correcting(known.tier);
        if let Some(open) = open {
            if !retracted && higher && !routes.is_empty() {
                open.sent = Some(tier);
            }
            open.group.correct(&triaged);
        }
        if let Some(d) = self.decided.get_mut(&triaged.alert.id) {
            d.tier = tier;
            d.routes = routes;
        }
        out.emit(Report::Triaged(Box::new(triaged)));
    }
}

impl TimeOrderedProcessor<Alert> for AlertManager {
    type Output = Report;

    fn on_record(&mut self, time: u64, alert: Alert, out: &mut Emitter<'_, Report>) {
        self.forget_before(time);
        if alert.correction.is_some() {
            self.on_correction(alert, out);
            return;
        }
        let policy = self.policy.clone();
        let policy = &policy;
        let desk = policy.desk_of_alert(&alert);
        let firm = policy.firm_of(alert.account, alert.time);
        let tier = policy.tier(&alert.rule, desk, alert.score);
        let key: GroupKey = (alert.rule.clone(), alert.instrument, alert.account);
        if let Some(open) = self.open.get_mut(&key) {
            let routes = if open.sent.is_none_or(|sent| tier > sent) {
                policy.routes(&alert.rule, tier, desk)
            } else {
                Routes::default()
            };
            if !routes.is_empty() {
                open.sent = Some(tier);
            }
            let triaged = TriagedAlert::new(alert, tier, desk, open.group.id, routes).with_firm(firm);
            open.group.add(&triaged, policy.max_listed);
            self.remember(time, &triaged);
            out.emit(Report::Triaged(Box::new(triaged)));
            return;
        }
        let routes = policy.routes(&alert.rule, tier, desk);
        let horizon = policy.horizon(&alert.rule, desk);
        let id = alert.id;
        let triaged = TriagedAlert::new(alert, tier, desk, id, routes).with_firm(firm);
        if horizon > 0 {
            let end = time.saturating_add(horizon);
            let group = AlertGroup::open(&triaged, end);
            self.open.insert(key.clone(), OpenGroup { group, sent: (!routes.is_empty()).then_some(tier) });
            self.closing.insert((end, key));
        }
        self.remember(time, &triaged);
        out.emit(Report::Triaged(Box::new(triaged)));
    }

    fn next_timer(&self) -> Option<u64> {
        self.closing.first().map(|(time, _)| *time)
    }

    fn on_timer(&mut self, time: u64, out: &mut Emitter<'_, Report>) {
        while let Some((due, _)) = self.closing.first()
            && *due == time
        {
            let Some((_, key)) = self.closing.pop_first() else { break };
            if let Some(OpenGroup { mut group, .. }) = self.open.remove(&key)
                && group.count > 1
            {
                group.routes = self.policy.routes(&group.rule, group.tier, group.desk);
                out.emit(Report::Group(Box::new(group)));
            }
        }
    }
}

/// The streams of [`ManageAlerts::manage_alerts`].
pub struct ManagedAlerts<'scope> {
    /// Every alert with its tier, group and routes ([`Report::Triaged`]), and the summaries of
    /// groups of repeats ([`Report::Group`]), for the writers.
    pub reports: Stream<'scope, u64, Vec<Report>>,
}

/// Extension trait: the alert manager on a stream of alerts.
pub trait ManageAlerts<'scope> {
    /// Tiers, groups and routes the alerts by `policy`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use timely::dataflow::operators::{Capture, ToStream};
    /// use timely::dataflow::operators::capture::Event;
    /// use surveil::config::AlertsConfig;
    /// use surveil::manager::{AlertPolicy, ManageAlerts};
    /// use surveil::model::{Alert, Report, Symbol, Tier};
    /// use surveil::reference::ReferenceData;
    ///
    /// let policy = Arc::new(AlertPolicy::new(&AlertsConfig::default(), Arc::new(ReferenceData::new(2))));
    /// let second = 1_000_000_000;
    /// let alerts: Vec<Alert> = [(1, 55.0), (2, 95.0), (3, 60.0)]
    ///     .map(|(s, score)| Alert::builder("cancel_burst", s * second).account(Symbol::of(b"ACC1")).score(score).build())
    ///     .to_vec();
    /// let captured = timely::example(move |scope| alerts.to_stream(scope).manage_alerts(policy).reports.capture());
    /// let reports: Vec<Report> = captured
    ///     .try_iter()
    ///     .flat_map(|event| if let Event::Messages(_, r) = event { r } else { Vec::new() })
    ///     .collect();
    /// let sent: Vec<Tier> = reports
    ///     .iter()
    ///     .filter_map(|r| match r {
    ///         Report::Triaged(t) if !t.routes.is_empty() => Some(t.tier),
    ///         _ => None,
    ///     })
    ///     .collect();
    /// // The first alert opens the group; the critical repeat raises its tier and is sent too;
    /// // the medium one folds. The group's summary counts all three.
    /// assert_eq!(sent, vec![Tier::Low, Tier::Critical]);
    /// let group = reports.iter().find_map(|r| if let Report::Group(g) = r { Some(g) } else { None }).unwrap();
    /// assert_eq!((group.count, group.tier), (3, Tier::Critical));
    /// ```
    fn manage_alerts(self, policy: Arc<AlertPolicy>) -> ManagedAlerts<'scope>;
}

impl<'scope> ManageAlerts<'scope> for Stream<'scope, u64, Vec<Alert>> {
    fn manage_alerts(self, policy: Arc<AlertPolicy>) -> ManagedAlerts<'scope> {
        let reports = self.process_in_time_order(
            "AlertManager",
            |alert: &Alert| route(&(alert.rule.as_str(), alert.instrument, alert.account)),
            |alert: &Alert| (alert.time, alert.order_key()),
            AlertManager::new(policy),
        );
        ManagedAlerts { reports }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use timely::dataflow::InputHandle;
    use timely::dataflow::operators::capture::Event as CaptureEvent;
    use timely::dataflow::operators::{Capture, Input, Probe};

    use super::*;
    use crate::config::{AlertPolicyOverride, RouteConfig};
    use crate::model::AlertId;

    const SECOND: u64 = 1_000_000_000;

    fn reference() -> Arc<ReferenceData> {
        let mut reference = ReferenceData::new(2);
        let accounts = "account,owner,desk,trader,firm\nACC1,OWN1,RETAIL,T1,NORTH_BROKERS\nACC2,OWN2,PROP,T2,\n";
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("accounts.csv");
        std::fs::write(&path, accounts).expect("write accounts");
        reference.load_accounts(&path).expect("accounts");
        Arc::new(reference)
    }

    fn alert(rule: &str, account: &str, second: u64, score: f64) -> Alert {
        Alert::builder(rule, second * SECOND)
            .instrument(Symbol::of(b"ACME"))
            .account(Symbol::of(account.as_bytes()))
            .score(score)
            .build()
    }

    /// Runs the manager on `workers` workers, each feeding a share of the alerts.
    fn manage_on(workers: usize, config: AlertsConfig, alerts: Vec<Alert>) -> Vec<Report> {
        let policy = Arc::new(AlertPolicy::new(&config, reference()));
        let alerts = Arc::new(alerts);
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        timely::execute(timely::Config::process(workers), move |worker| {
            let (index, peers) = (worker.index(), worker.peers());
            let mut input = InputHandle::<u64, timely::container::CapacityContainerBuilder<Vec<Alert>>>::new();
            let probe = timely::dataflow::ProbeHandle::new();
            let captured = worker.dataflow::<u64, _, _>(|scope| {
                scope.input_from(&mut input).manage_alerts(policy.clone()).reports.probe_with(&probe).capture()
            });
            let mut mine: Vec<&Alert> = alerts.iter().skip(index).step_by(peers).collect();
            mine.sort_by_key(|a| a.time);
            for alert in mine {
                if alert.time > *input.time() {
                    input.advance_to(alert.time);
                }
                input.send(alert.clone());
                worker.step();
            }
            drop(input);
            while worker.step_or_park(None) {}
            let reports: Vec<Report> = captured
                .try_iter()
                .flat_map(|event| match event {
                    CaptureEvent::Messages(_, reports) => reports,
                    CaptureEvent::Progress(_) => Vec::new(),
                })
                .collect();
            sink.lock().expect("sink").extend(reports);
        })
        .expect("timely");
        let mut reports = std::mem::take(&mut *out.lock().expect("out"));
        reports.sort_by_key(|r| match r {
            Report::Triaged(t) => (0, t.alert.time, t.alert.id),
            Report::Group(g) => (1, g.horizon_end, g.id),
            _ => (2, 0, AlertId(0)),
        });
        reports
    }

    /// The manager's decisions computed over the whole input at once: sort every alert, close
    /// each group at its horizon's end, fold repeats, send openers and tier raises.
    fn oracle(config: &AlertsConfig, mut alerts: Vec<Alert>) -> Vec<Report> {
        let policy = AlertPolicy::new(config, reference());
        alerts.sort_by_key(|a| (a.time, a.order_key()));
        let mut open: std::collections::BTreeMap<GroupKey, (AlertGroup, Option<Tier>)> = Default::default();
        let mut out = Vec::new();
        let close = |open: &mut std::collections::BTreeMap<GroupKey, (AlertGroup, Option<Tier>)>,
                     before: u64,
                     out: &mut Vec<Report>| {
            let due: Vec<GroupKey> =
                open.iter().filter(|(_, (g, _))| g.horizon_end <= before).map(|(k, _)| k.clone()).collect();
            for key in due {
                let (mut group, _) = open.remove(&key).expect("due");
                if group.count > 1 {
                    group.routes = policy.routes(&group.rule, group.tier, group.desk);
                    out.push(Report::Group(Box::new(group)));
                }
            }
        };
        for alert in alerts {
            close(&mut open, alert.time, &mut out);
            let desk = policy.desk_of_alert(&alert);
            let firm = policy.firm_of(alert.account, alert.time);
            let tier = policy.tier(&alert.rule, desk, alert.score);
            let key = (alert.rule.clone(), alert.instrument, alert.account);
            let triaged = match open.get_mut(&key) {
                Some((group, sent)) => {
                    let raise = sent.is_none_or(|s| tier > s);
                    let routes = if raise { policy.routes(&alert.rule, tier, desk) } else { Routes::default() };
                    if !routes.is_empty() {
                        *sent = Some(tier);
                    }
                    let t = TriagedAlert::new(alert, tier, desk, group.id, routes).with_firm(firm);
                    group.add(&t, policy.max_listed);
                    t
                }
                None => {
                    let routes = policy.routes(&alert.rule, tier, desk);
                    let horizon = policy.horizon(&alert.rule, desk);
                    let id = alert.id;
                    let t = TriagedAlert::new(alert, tier, desk, id, routes).with_firm(firm);
                    if horizon > 0 {
                        let group = AlertGroup::open(&t, t.alert.time.saturating_add(horizon));
                        open.insert(key, (group, (!routes.is_empty()).then_some(tier)));
                    }
                    t
                }
            };
            out.push(Report::Triaged(Box::new(triaged)));
        }
        close(&mut open, u64::MAX, &mut out);
        out.sort_by_key(|r| match r {
            Report::Triaged(t) => (0, t.alert.time, t.alert.id),
            Report::Group(g) => (1, g.horizon_end, g.id),
            _ => (2, 0, AlertId(0)),
        });
        out
    }

    fn config(horizon_s: u64) -> AlertsConfig {
        let mut config =
            AlertsConfig { group_horizon: std::time::Duration::from_secs(horizon_s), ..Default::default() };
        config.max_listed = 3;
        config.routes.push(RouteConfig {
            name: "urgent".into(),
            tiers: vec!["high".into(), "critical".into()],
            rules: vec![],
            desks: vec![],
            webhook: None,
            kafka_topic: None,
        });
        config.routes.push(RouteConfig {
            name: "retail_limits".into(),
            tiers: vec!["info".into(), "low".into(), "medium".into(), "high".into(), "critical".into()],
            rules: vec!["limit".into()],
            desks: vec!["RETAIL".into()],
            webhook: None,
            kafka_topic: None,
        });
        config
    }

    #[test]
    fn tiers_follow_the_cut_offs_and_a_desk_wins_over_a_rule() {
        let mut config = AlertsConfig::default();
        let strict = TierCutoffs { low: 10.0, medium: 20.0, high: 30.0, critical: 40.0 };
        let lax = TierCutoffs { low: 90.0, medium: 95.0, high: 98.0, critical: 99.0 };
        config.rules.insert("limit".into(), AlertPolicyOverride { tiers: Some(lax), group_horizon: None });
        config.desks.insert(
            "RETAIL".into(),
            AlertPolicyOverride { tiers: Some(strict), group_horizon: Some(std::time::Duration::ZERO) },
        );
        let policy = AlertPolicy::new(&config, reference());
        let (retail, prop) = (policy.desk_of(Symbol::of(b"ACC1"), 0), policy.desk_of(Symbol::of(b"ACC2"), 0));
        assert_eq!(retail, Symbol::of(b"RETAIL"));
        assert_eq!(policy.tier("other", prop, 49.9), Tier::Info);
        assert_eq!(policy.tier("other", prop, 50.0), Tier::Low);
        assert_eq!(policy.tier("other", prop, 69.08), Tier::High);
        assert_eq!(policy.tier("other", prop, 90.0), Tier::Critical);
        assert_eq!(policy.tier("limit", prop, 90.0), Tier::Low);
        assert_eq!(policy.tier("limit", retail, 35.0), Tier::High);
        assert_eq!(policy.horizon("limit", retail), 0);
        assert_eq!(policy.horizon("limit", prop), 15 * 60 * SECOND);
        // Field by field: a desk that sets only a horizon keeps the rule's cut-offs.
        let mut config = config.clone();
        config.desks.insert(
            "PROP".into(),
            AlertPolicyOverride { tiers: None, group_horizon: Some(std::time::Duration::from_secs(60)) },
        );
        let policy = AlertPolicy::new(&config, reference());
        assert_eq!(policy.tier("limit", prop, 90.0), Tier::Low);
        assert_eq!(policy.horizon("limit", prop), 60 * SECOND);
        // The default cut-offs are the excess bands of the rules' severities.
        use crate::model::alert::score_from_excess;
        for (ratio, severity) in [(1.0, Tier::Low), (1.5, Tier::Medium), (3.0, Tier::High), (10.0, Tier::Critical)] {
            assert_eq!(policy.tier("x", prop, score_from_excess(ratio)), severity);
            assert_eq!(policy.tier("x", prop, score_from_excess(ratio) - 0.5), Tier::ALL[severity as usize - 1]);
        }
    }

    #[test]
    fn routes_match_tier_rule_and_desk() {
        let policy = AlertPolicy::new(&config(60), reference());
        let retail = Symbol::of(b"RETAIL");
        assert_eq!(policy.routes("limit", Tier::Info, retail), Routes(0b100));
        assert_eq!(policy.routes("limit", Tier::Low, retail), Routes(0b101));
        assert_eq!(policy.routes("limit", Tier::High, retail), Routes(0b111));
        assert_eq!(policy.routes("limit", Tier::High, Symbol::of(b"PROP")), Routes(0b011));
        assert_eq!(policy.routes("other", Tier::Critical, retail), Routes(0b011));
        assert_eq!(policy.route_names(), ["all", "urgent", "retail_limits"]);
    }

    #[test]
    fn repeats_fold_into_one_group_and_a_raised_tier_is_sent_at_once() {
        let alerts = vec![
            alert("limit", "ACC2", 0, 55.0),  // opens, low: sent on `all`
            alert("limit", "ACC2", 10, 52.0), // folds
            alert("limit", "ACC2", 20, 70.0), // raises to high: sent
            alert("limit", "ACC2", 30, 60.0), // folds
            alert("limit", "ACC2", 59, 75.0), // high again: folds
            alert("limit", "ACC2", 60, 51.0), // the horizon [0, 60) closed: opens anew
            alert("other", "ACC2", 5, 40.0),  // another rule, info: opens, sent nowhere
        ];
        let reports = manage_on(1, config(60), alerts);
        let sent: Vec<(u64, Tier, u64)> = reports
            .iter()
            .filter_map(|r| match r {
                Report::Triaged(t) => Some((t.alert.time / SECOND, t.tier, t.routes.0)),
                _ => None,
            })
            .collect();
        assert_eq!(
            sent,
            vec![
                (0, Tier::Low, 0b001),
                (5, Tier::Info, 0),
                (10, Tier::Low, 0),
                (20, Tier::High, 0b011),
                (30, Tier::Medium, 0),
                (59, Tier::High, 0),
                (60, Tier::Low, 0b001)
            ]
        );
        let groups: Vec<&AlertGroup> =
            reports.iter().filter_map(|r| if let Report::Group(g) = r { Some(&**g) } else { None }).collect();
        assert_eq!(groups.len(), 1, "single alerts make no summary");
        let group = groups[0];
        assert_eq!((group.count, group.tier, group.max_score), (5, Tier::High, 75.0));
        assert_eq!((group.first_time, group.last_time, group.horizon_end), (0, 59 * SECOND, 60 * SECOND));
        assert_eq!(group.occurrences.len(), 3);
        assert!(group.truncated);
        assert_eq!(group.routes, Routes(0b011));
        let first = reports.iter().find_map(|r| if let Report::Triaged(t) = r { Some(t) } else { None });
        assert!(first.is_some_and(|t| t.opened_group() && t.group == group.id));
    }

    #[test]
    fn an_alert_carries_its_accounts_firm() {
        let reports = manage_on(1, config(0), vec![alert("limit", "ACC1", 0, 55.0), alert("limit", "ACC2", 1, 55.0)]);
        let firms: Vec<Symbol> =
            reports.iter().filter_map(|r| if let Report::Triaged(t) = r { Some(t.firm) } else { None }).collect();
        assert_eq!(firms, vec![Symbol::of(b"NORTH_BROKERS"), Symbol::NONE]);
    }

    #[test]
    fn no_horizon_means_no_groups() {
        let alerts: Vec<Alert> = (0..5).map(|i| alert("limit", "ACC2", i, 60.0)).collect();
        let reports = manage_on(1, config(0), alerts);
        assert_eq!(reports.len(), 5);
        assert!(reports.iter().all(|r| matches!(r, Report::Triaged(t) if t.opened_group() && t.routes == Routes(1))));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

        /// The streaming manager on 1 to 3 workers decides what the batch computation decides.
        #[test]
        fn streaming_matches_the_batch_oracle(
            raw in proptest::collection::vec((0usize..3, 0usize..3, 0u64..400, 0u32..101), 0..60),
            horizon in 0u64..120,
            workers in 1usize..4,
        ) {
            let rules = ["limit", "collar", "burst"];
            let accounts = ["ACC1", "ACC2", "ACC3"];
            let alerts: Vec<Alert> = raw
                .iter()
                .map(|&(r, a, t, s)| alert(rules[r], accounts[a], t, s as f64))
                .collect();
            let mut unique = alerts.clone();
            unique.sort_by_key(|a| a.id);
            unique.dedup_by_key(|a| a.id);
            let config = config(horizon);
            proptest::prop_assert_eq!(manage_on(workers, config.clone(), unique.clone()), oracle(&config, unique));
        }
    }

    #[test]
    fn a_correction_joins_its_alerts_group_and_goes_where_it_went() {
        use crate::model::CorrectionKind;
        let first = alert("layering", "ACC1", 1, 55.0);
        let repeat = alert("layering", "ACC1", 2, 95.0);
        let correction = |seconds: u64, original: &Alert, kind, score, reason: &str| {
            Alert::builder("layering", seconds * SECOND)
                .instrument(Symbol::of(b"ACME"))
                .account(Symbol::of(b"ACC1"))
                .score(score)
                .corrects(original, kind, reason)
                .build()
        };
        let retract = correction(3, &first, CorrectionKind::Retracted, 0.0, "the layers traded");
        let downgrade = correction(4, &repeat, CorrectionKind::Downgraded, 50.0, "a layer traded");
        let reports = manage_on(2, AlertsConfig::default(), vec![first.clone(), repeat.clone(), retract, downgrade]);
        let triaged: Vec<&TriagedAlert> =
            reports.iter().filter_map(|r| if let Report::Triaged(t) = r { Some(&**t) } else { None }).collect();
        assert_eq!(triaged.len(), 4);
        // The retraction: same id, same group, sent where the alert was sent, tier info.
        let (raised, retracted) = (triaged[0], triaged[2]);
        assert_eq!((retracted.alert.id, retracted.group), (raised.alert.id, raised.group));
        assert_eq!(
            (retracted.tier, retracted.prior_tier, retracted.routes),
            (Tier::Info, Some(raised.tier), raised.routes)
        );
        // The repeat raised the group's tier and was sent; its downgrade follows it there.
        assert_eq!(triaged[3].prior_tier, Some(Tier::Critical));
        assert_eq!((triaged[3].group, triaged[3].routes), (first.id, triaged[1].routes));
        assert!(!triaged[1].routes.is_empty());
        // The summary counts both alerts, the corrections, and the highest live score.
        let group =
            reports.iter().find_map(|r| if let Report::Group(g) = r { Some(g) } else { None }).expect("a group");
        assert_eq!((group.count, group.corrections, group.retracted), (2, 2, 1));
        assert_eq!(group.max_score, 50.0);
        assert!(group.occurrences[0].retracted && !group.occurrences[1].retracted);
    }

    #[test]
    fn a_correction_after_the_horizon_goes_to_the_routes_of_the_score_it_corrects() {
        use crate::model::CorrectionKind;
        let config = AlertsConfig { correction_horizon: std::time::Duration::from_secs(10), ..AlertsConfig::default() };
        let raised = alert("layering", "ACC1", 1, 95.0);
        let late = Alert::builder("layering", 3_600 * SECOND)
            .instrument(Symbol::of(b"ACME"))
            .account(Symbol::of(b"ACC1"))
            .corrects(&raised, CorrectionKind::Retracted, "late")
            .build();
        let reports = manage_on(1, config, vec![raised.clone(), late]);
        let triaged: Vec<&TriagedAlert> =
            reports.iter().filter_map(|r| if let Report::Triaged(t) = r { Some(&**t) } else { None }).collect();
        assert_eq!(triaged[1].group, raised.id);
        assert_eq!((triaged[1].prior_tier, triaged[1].routes), (Some(triaged[0].tier), triaged[0].routes));
    }
}
