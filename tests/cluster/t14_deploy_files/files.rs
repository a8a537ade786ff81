//! Reading the deployment files as a container engine would: the
//! Dockerfile's runtime stage, `docker-compose.yml`'s services and the ECS
//! task definition's container, each as the program, environment, ports,
//! volumes and health check of a [`Container`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;

use serde_json::Value as Json;
use serde_norway::Value as Yaml;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// What the image gives every container: its runtime stage's settings.
#[derive(Debug, Default)]
pub(super) struct Image {
    pub(super) env: Vec<(String, String)>,
    pub(super) entrypoint: Vec<String>,
    pub(super) cmd: Vec<String>,
    pub(super) healthcheck: Vec<String>,
    pub(super) volumes: Vec<String>,
    pub(super) exposed: BTreeSet<u16>,
}

/// One container (a compose service, an ECS task) as the files describe it.
#[derive(Debug)]
pub(super) struct Container {
    pub(super) name: String,
    pub(super) argv: Vec<String>,
    /// In order of precedence: a later value of a variable wins.
    pub(super) env: Vec<(String, String)>,
    pub(super) ports: BTreeSet<u16>,
    pub(super) volumes: Vec<Mount>,
    pub(super) healthcheck: Vec<String>,
}

/// A path in the container that is a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Mount {
    pub(super) target: String,
    /// A bind mount's host path, relative to the compose file's directory;
    /// `None` for a volume of the container's own (empty at first).
    pub(super) bind: Option<String>,
}

impl Mount {
    pub(super) fn volume(target: &str) -> Self {
        Self { target: target.to_string(), bind: None }
    }
}

impl Container {
    /// The container paths of its volumes.
    pub(super) fn volume_targets(&self) -> Vec<&str> {
        self.volumes.iter().map(|m| m.target.as_str()).collect()
    }

    pub(super) fn var(&self, key: &str) -> Option<&str> {
        self.env.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The port of listen address `key` (`HTTP_ADDR`, `RAFT_ADDR`), or the
    /// flag's default if the files leave it unset.
    pub(super) fn listen_port(&self, key: &str, default: u16) -> u16 {
        self.var(key).map_or(default, |addr| addr.parse::<SocketAddr>().expect("a listen address").port())
    }
}

pub(super) fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(REPO).join(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// An exec-form instruction argument: a JSON array of strings.
fn exec_form(text: &str) -> Vec<String> {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{text:?} is not an exec-form JSON array: {e}"))
}

/// The settings of the Dockerfile's last stage (the runtime image).
pub(super) fn dockerfile_image(text: &str) -> Image {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => instructions.push(std::mem::take(&mut current) + line),
        }
    }
    let mut image = Image::default();
    for instruction in instructions {
        let (keyword, rest) = instruction.split_once(char::is_whitespace).unwrap_or((&instruction, ""));
        let rest = rest.trim();
        match keyword.to_ascii_uppercase().as_str() {
            // A new stage starts from its base: only the last one is the image.
            "FROM" => image = Image::default(),
            "ENV" => image.env.extend(env_instruction(rest)),
            "ENTRYPOINT" => image.entrypoint = exec_form(rest),
            "CMD" => image.cmd = exec_form(rest),
            "VOLUME" => image.volumes = exec_form(rest),
            "EXPOSE" => image.exposed.extend(rest.split_whitespace().map(port)),
            "HEALTHCHECK" => {
                let (_, command) = rest.split_once("CMD").expect("HEALTHCHECK [options] CMD [...]");
                image.healthcheck = exec_form(command);
            }
            _ => {}
        }
    }
    image
}

/// `ENV KEY=VALUE ...`, or the old `ENV KEY VALUE`. Values are unquoted
/// words: a quoted value would need the Dockerfile's quoting rules.
fn env_instruction(rest: &str) -> Vec<(String, String)> {
    assert!(!rest.contains(['"', '\'']), "ENV {rest}: quoted values are not read by this test");
    let first = rest.split_whitespace().next().unwrap_or_default();
    if !first.contains('=') {
        let (key, value) = rest.split_once(char::is_whitespace).expect("ENV KEY VALUE");
        return vec![(key.to_string(), value.trim().to_string())];
    }
    rest.split_whitespace()
        .map(|pair| {
            let (key, value) = pair.split_once('=').expect("ENV KEY=VALUE");
            (key.to_string(), value.to_string())
        })
        .collect()
}

/// `8080`, `8080/tcp`, or the container side of a compose mapping
/// (`8081:8080`, `127.0.0.1:8081:8080/tcp`).
fn port(text: &str) -> u16 {
    let container = text.rsplit(':').next().unwrap_or(text);
    let number = container.split('/').next().unwrap_or(container);
    number.parse().unwrap_or_else(|e| panic!("port {text:?}: {e}"))
}

/// A compose scalar as the environment sees it.
fn yaml_scalar(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        // `KEY:` with no value takes the host's variable: none here.
        Yaml::Null => None,
        other => panic!("environment value {other:?} is not a scalar"),
    }
}

/// A compose command or entrypoint: a list, or a string split into words.
fn yaml_words(value: &Yaml) -> Vec<String> {
    match value {
        Yaml::String(s) => s.split_whitespace().map(String::from).collect(),
        Yaml::Sequence(items) => items.iter().map(|v| yaml_scalar(v).expect("a word")).collect(),
        other => panic!("{other:?} is neither a string nor a list"),
    }
}

/// A health check's `["CMD", program, args...]` as the program and args.
fn exec_check(test: Vec<String>) -> Vec<String> {
    match test.split_first() {
        Some((kind, command)) if kind == "CMD" => command.to_vec(),
        _ => panic!("health check {test:?}: only the exec form [\"CMD\", ...] is run by this test"),
    }
}

/// Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?message}` in `text`,
/// from `vars` (the shell's environment, for compose).
fn interpolate(text: &str, vars: &BTreeMap<&str, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').map(|e| start + e).expect("a closing brace");
        let expr = &rest[start + 2..end];
        let (name, default) = match expr.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (expr.split_once(":?").map_or(expr, |(name, _)| name), None),
        };
        match (vars.get(name), default) {
            (Some(value), _) => out.push_str(value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => panic!("compose needs ${{{name}}} set: {expr}"),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A compose file, interpolated and with its merge keys applied.
fn compose_document(text: &str, vars: &BTreeMap<&str, String>) -> Yaml {
    let mut doc: Yaml = serde_norway::from_str(&interpolate(text, vars)).expect("a compose file is YAML");
    // Compose applies YAML merge keys (`<<: *anchor`) before it reads a service.
    doc.apply_merge().expect("a compose file's merge keys");
    doc
}

/// The target of a compose volume entry (`SOURCE:TARGET[:MODE]`, or the
/// long form's `target`).
fn volume_target(entry: &Yaml) -> String {
    match entry {
        Yaml::Mapping(_) => entry.get("target").and_then(Yaml::as_str).expect("volumes: target").to_string(),
        other => {
            let spec = other.as_str().expect("SOURCE:TARGET");
            spec.split(':').nth(1).unwrap_or(spec).to_string()
        }
    }
}

/// `overlay` merged into `base` as `docker compose -f base -f overlay`
/// does for what these files use: a service's `environment` merged by
/// variable, its `volumes` by target, anything else replaced.
fn merge_compose(base: &mut Yaml, overlay: &Yaml) {
    let Some(services) = overlay.get("services").and_then(Yaml::as_mapping) else { return };
    for (name, service) in services {
        let base_service = base
            .get_mut("services")
            .and_then(|s| s.get_mut(name))
            .and_then(Yaml::as_mapping_mut)
            .unwrap_or_else(|| panic!("the overlay's service {name:?} is in the base file"));
        for (key, value) in service.as_mapping().expect("a service is a mapping") {
            match (key.as_str(), base_service.get_mut(key)) {
                (Some("environment"), Some(Yaml::Mapping(vars))) => {
                    let overlay_vars = value.as_mapping().expect("environment as a mapping");
                    vars.extend(overlay_vars.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                (Some("volumes"), Some(Yaml::Sequence(entries))) => {
                    for entry in value.as_sequence().expect("volumes as a list") {
                        entries.retain(|e| volume_target(e) != volume_target(entry));
                        entries.push(entry.clone());
                    }
                }
                _ => {
                    base_service.insert(key.clone(), value.clone());
                }
            }
        }
    }
}

/// The services of compose files `texts` (the base file, then overlays, as
/// `-f` gives them), with `vars` the shell's environment.
pub(super) fn compose_containers(texts: &[&str], image: &Image, vars: &BTreeMap<&str, String>) -> Vec<Container> {
    let (base, overlays) = texts.split_first().expect("a compose file");
    let mut doc = compose_document(base, vars);
    for overlay in overlays {
        merge_compose(&mut doc, &compose_document(overlay, vars));
    }
    let services = doc.get("services").and_then(Yaml::as_mapping).expect("docker-compose.yml has services");
    let mut containers = Vec::new();
    for (name, service) in services {
        let name = name.as_str().expect("a service name").to_string();
        // As docker does: an entrypoint of the service's own drops the image's CMD.
        let (entrypoint, cmd) = match service.get("entrypoint") {
            Some(entrypoint) => (yaml_words(entrypoint), Vec::new()),
            None => (image.entrypoint.clone(), image.cmd.clone()),
        };
        let cmd = service.get("command").map_or(cmd, yaml_words);
        let mut env = image.env.clone();
        match service.get("environment") {
            None => {}
            Some(Yaml::Mapping(vars)) => env.extend(vars.iter().filter_map(|(key, value)| {
                Some((key.as_str().expect("a variable name").to_string(), yaml_scalar(value)?))
            })),
            Some(Yaml::Sequence(vars)) => env.extend(vars.iter().map(|pair| {
                let pair = pair.as_str().expect("KEY=VALUE");
                let (key, value) = pair.split_once('=').expect("KEY=VALUE");
                (key.to_string(), value.to_string())
            })),
            Some(other) => panic!("service {name}: environment {other:?}"),
        }
        let entries = |key: &str| service.get(key).and_then(Yaml::as_sequence).cloned().unwrap_or_default();
        let ports = entries("ports")
            .iter()
            .map(|p| match p {
                Yaml::Mapping(_) => p.get("target").and_then(Yaml::as_u64).expect("ports: target") as u16,
                other => port(&yaml_scalar(other).expect("a port")),
            })
            .collect();
        let volumes = entries("volumes")
            .iter()
            .map(|v| {
                let source = match v {
                    Yaml::Mapping(_) => v.get("source").and_then(Yaml::as_str).map(String::from),
                    other => other.as_str().and_then(|spec| spec.split(':').next()).map(String::from),
                };
                // A source that is a path is a bind mount; a name, a volume.
                let bind = source.filter(|s| s.starts_with("./") || s.starts_with('/'));
                Mount { target: volume_target(v), bind }
            })
            .collect();
        let healthcheck = match service.get("healthcheck").and_then(|h| h.get("test")) {
            Some(test) => exec_check(yaml_words(test)),
            None => image.healthcheck.clone(),
        };
        containers.push(Container { name, argv: [entrypoint, cmd].concat(), env, ports, volumes, healthcheck });
    }
    containers
}

/// The task definition's one container, with `secrets` (by variable name)
/// standing for what ECS would fetch from Secrets Manager or SSM.
pub(super) fn ecs_container(text: &str, image: &Image, secrets: &BTreeMap<&str, String>) -> Container {
    let task: Json = serde_json::from_str(text).expect("task-definition.json is JSON");
    let definitions = task["containerDefinitions"].as_array().expect("containerDefinitions");
    assert_eq!(definitions.len(), 1, "one container per task");
    let def = &definitions[0];
    let strings = |value: &Json| -> Vec<String> {
        value
            .as_array()
            .map(|a| a.iter().map(|s| s.as_str().expect("a string").to_string()).collect())
            .unwrap_or_default()
    };
    let (entrypoint, cmd) = match def.get("entryPoint") {
        Some(entrypoint) => (strings(entrypoint), Vec::new()),
        None => (image.entrypoint.clone(), image.cmd.clone()),
    };
    let cmd = def.get("command").map_or(cmd, strings);
    let mut env = image.env.clone();
    let named = |key: &str| def[key].as_array().cloned().unwrap_or_default();
    for var in named("environment") {
        env.push((var["name"].as_str().expect("name").into(), var["value"].as_str().expect("value").into()));
    }
    for secret in named("secrets") {
        let name = secret["name"].as_str().expect("name");
        let value = secrets.get(name).unwrap_or_else(|| panic!("the test has no value for secret {name}"));
        env.push((name.to_string(), value.clone()));
    }
    let ports =
        named("portMappings").iter().map(|p| p["containerPort"].as_u64().expect("containerPort") as u16).collect();
    let volumes = named("mountPoints")
        .iter()
        .map(|m| Mount::volume(m["containerPath"].as_str().expect("containerPath")))
        .collect();
    assert_eq!(task["networkMode"], "awsvpc", "each task has its own address");
    Container {
        name: def["name"].as_str().expect("name").to_string(),
        argv: [entrypoint, cmd].concat(),
        env,
        ports,
        volumes,
        healthcheck: exec_check(strings(&def["healthCheck"]["command"])),
    }
}

/// The fenced code blocks of docs/deploy.md's section `heading` (up to the
/// next heading of its level or above): (info string, text).
pub(super) fn guide_blocks(heading: &str) -> Vec<(String, String)> {
    let guide = read("docs/deploy.md");
    let start = guide.find(heading).unwrap_or_else(|| panic!("docs/deploy.md has {heading:?}"));
    let level = heading.split(' ').next().map_or(2, str::len);
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in guide[start + heading.len()..].lines() {
        match (line.strip_prefix("```"), current.take()) {
            (Some(info), None) => current = Some((info.trim().to_string(), String::new())),
            (Some(_), Some(block)) => blocks.push(block),
            (None, Some((info, mut text))) => {
                text.push_str(line);
                text.push('\n');
                current = Some((info, text));
            }
            (None, None) => {
                let marks = line.split(' ').next().unwrap_or_default();
                if !marks.is_empty() && marks.chars().all(|c| c == '#') && marks.len() <= level {
                    break;
                }
            }
        }
    }
    blocks
}
