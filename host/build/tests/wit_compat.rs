//! The WIT compatibility rule (wit/README.md, "Versioning"), checked.
//!
//! `wit/released/sluice-rules-<version>.wit` is a verbatim copy of `wit/rules.wit` as each
//! version was released. Every rule built against a released version must keep loading. The
//! host serves each track (`0.1`, `0.2`) with the newest WIT of that track: `wit/rules.wit`
//! for the current one (`0.2`), the newest snapshot for an older one (`0.1.5`, which the
//! host's 0.1 bindings are generated from). That WIT must still hold everything of each
//! snapshot of its track with the same shape: every interface, every type (records, variants,
//! enums, resources, exactly as they were), every function (same parameters and result) and
//! every world import. It may add interfaces, types, functions and imports. A world may not
//! gain exports: a rule built earlier does not export them, and would stop loading.

use std::path::{Path, PathBuf};

use wit_parser::{
    Function, Handle, InterfaceId, PackageId, Resolve, Type, TypeDefKind, TypeOwner, WorldItem,
    WorldKey,
};

/// A parsed WIT package.
struct Wit {
    resolve: Resolve,
    pkg: PackageId,
}

impl Wit {
    fn dir(path: &Path) -> Wit {
        let mut resolve = Resolve::default();
        let (pkg, _) = resolve
            .push_dir(path)
            .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        Wit { resolve, pkg }
    }

    fn text(name: &str, text: &str) -> Wit {
        let mut resolve = Resolve::default();
        let pkg = resolve
            .push_str(name, text)
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        Wit { resolve, pkg }
    }

    /// `namespace:name/interface`, without the version (it is compared separately).
    fn interface(&self, id: InterfaceId) -> String {
        let iface = &self.resolve.interfaces[id];
        match (&iface.name, iface.package) {
            (Some(name), Some(pkg)) => {
                let pkg = &self.resolve.packages[pkg].name;
                format!("{}:{}/{name}", pkg.namespace, pkg.name)
            }
            _ => "<anonymous interface>".into(),
        }
    }

    /// A type as text independent of the arena ids: named types by reference
    /// (`ns:pkg/interface.name`), anonymous ones spelled out.
    fn ty(&self, ty: &Type) -> String {
        let Type::Id(id) = ty else {
            return format!("{ty:?}").to_lowercase();
        };
        let def = &self.resolve.types[*id];
        match &def.name {
            Some(name) => {
                let owner = match def.owner {
                    TypeOwner::Interface(i) => self.interface(i),
                    TypeOwner::World(w) => format!("world {}", self.resolve.worlds[w].name),
                    TypeOwner::None => String::new(),
                };
                format!("{owner}.{name}")
            }
            None => self.kind(&def.kind),
        }
    }

    fn opt(&self, ty: &Option<Type>) -> String {
        ty.as_ref().map_or_else(|| "_".into(), |t| self.ty(t))
    }

    /// A type definition as text.
    fn kind(&self, kind: &TypeDefKind) -> String {
        let list = |items: Vec<String>| items.join(", ");
        match kind {
            TypeDefKind::Record(r) => format!(
                "record {{ {} }}",
                list(
                    r.fields
                        .iter()
                        .map(|f| format!("{}: {}", f.name, self.ty(&f.ty)))
                        .collect()
                )
            ),
            TypeDefKind::Resource => "resource".into(),
            TypeDefKind::Handle(Handle::Own(id)) => format!("own<{}>", self.ty(&Type::Id(*id))),
            TypeDefKind::Handle(Handle::Borrow(id)) => {
                format!("borrow<{}>", self.ty(&Type::Id(*id)))
            }
            TypeDefKind::Flags(f) => format!(
                "flags {{ {} }}",
                list(f.flags.iter().map(|f| f.name.clone()).collect())
            ),
            TypeDefKind::Tuple(t) => format!(
                "tuple<{}>",
                list(t.types.iter().map(|t| self.ty(t)).collect())
            ),
            TypeDefKind::Variant(v) => format!(
                "variant {{ {} }}",
                list(
                    v.cases
                        .iter()
                        .map(|c| format!("{}({})", c.name, self.opt(&c.ty)))
                        .collect()
                )
            ),
            TypeDefKind::Enum(e) => format!(
                "enum {{ {} }}",
                list(e.cases.iter().map(|c| c.name.clone()).collect())
            ),
            TypeDefKind::Option(t) => format!("option<{}>", self.ty(t)),
            TypeDefKind::Result(r) => {
                format!("result<{}, {}>", self.opt(&r.ok), self.opt(&r.err))
            }
            TypeDefKind::List(t) => format!("list<{}>", self.ty(t)),
            TypeDefKind::Map(k, v) => format!("map<{}, {}>", self.ty(k), self.ty(v)),
            TypeDefKind::FixedLengthList(t, n) => format!("list<{}, {n}>", self.ty(t)),
            TypeDefKind::Future(t) => format!("future<{}>", self.opt(t)),
            TypeDefKind::Stream(t) => format!("stream<{}>", self.opt(t)),
            TypeDefKind::Type(t) => format!("= {}", self.ty(t)),
            TypeDefKind::Unknown => "unknown".into(),
        }
    }

    /// A function's signature as text: kind (and resource), parameters, result.
    fn func(&self, f: &Function) -> String {
        let debug = format!("{:?}", f.kind);
        let kind = debug.split('(').next().unwrap_or_default();
        let resource = f
            .kind
            .resource()
            .map(|id| format!(" of {}", self.ty(&Type::Id(id))))
            .unwrap_or_default();
        let params: Vec<String> = f
            .params
            .iter()
            .map(|p| format!("{}: {}", p.name, self.ty(&p.ty)))
            .collect();
        format!(
            "{kind}{resource} func({}) -> {}",
            params.join(", "),
            self.opt(&f.result)
        )
    }

    fn key(&self, key: &WorldKey) -> String {
        match key {
            WorldKey::Name(name) => name.clone(),
            WorldKey::Interface(id) => self.interface(*id),
        }
    }

    fn item(&self, item: &WorldItem) -> String {
        match item {
            WorldItem::Interface { id, .. } => format!("interface {}", self.interface(*id)),
            WorldItem::Function(f) => self.func(f),
            WorldItem::Type { id, .. } => self.kind(&self.resolve.types[*id].kind),
        }
    }
}

/// Everything of `old` that `new` no longer serves the same way; empty when `new` is a
/// compatible successor.
/// Types only rules produce (in the results of the world's exports), which may gain cases
/// appended at the end within a track: the host type-checks a rule's exports against the
/// snapshot it was built with (`host/engine/src/bindings.rs` has bindings of that snapshot,
/// checked in [`every_released_version_is_still_served`]), so both shapes load. 0.2.1
/// appended `replace-part` to `action`.
const APPENDABLE: &[&str] = &["types.action"];

/// `now` is the variant `was` with cases appended.
fn appended_cases(was: &str, now: &str) -> bool {
    let head = was.trim_end_matches(" }");
    was.starts_with("variant {") && now.starts_with(head) && now[head.len()..].starts_with(", ")
}

fn incompatibilities(old: &Wit, new: &Wit) -> Vec<String> {
    let mut problems = Vec::new();
    let (op, np) = (
        &old.resolve.packages[old.pkg],
        &new.resolve.packages[new.pkg],
    );
    let (on, nn) = (&op.name, &np.name);
    if (&on.namespace, &on.name) != (&nn.namespace, &nn.name) {
        problems.push(format!("package renamed: {on} -> {nn}"));
    }
    match (&on.version, &nn.version) {
        (Some(ov), Some(nv)) => {
            let same_track = if ov.major == 0 {
                nv.major == 0 && nv.minor == ov.minor
            } else {
                nv.major == ov.major
            };
            if !same_track || nv < ov || !nv.pre.is_empty() {
                problems.push(format!(
                    "version {nv} is not a compatible successor of {ov} (same {}, not lower)",
                    if ov.major == 0 { "0.minor" } else { "major" }
                ));
            }
        }
        (ov, nv) => problems.push(format!("version {ov:?} -> {nv:?}: both must be set")),
    }

    for (name, &oid) in &op.interfaces {
        let Some(&nid) = np.interfaces.get(name) else {
            problems.push(format!("interface `{name}` is gone"));
            continue;
        };
        let (oi, ni) = (&old.resolve.interfaces[oid], &new.resolve.interfaces[nid]);
        for (tname, &otid) in &oi.types {
            let was = old.kind(&old.resolve.types[otid].kind);
            match ni.types.get(tname) {
                None => problems.push(format!("type `{name}.{tname}` is gone")),
                Some(&ntid) => {
                    let now = new.kind(&new.resolve.types[ntid].kind);
                    let appendable = APPENDABLE.contains(&format!("{name}.{tname}").as_str());
                    if was != now && !(appendable && appended_cases(&was, &now)) {
                        problems.push(format!(
                            "type `{name}.{tname}` changed:\n  was {was}\n  now {now}"
                        ));
                    }
                }
            }
        }
        for (fname, of) in &oi.functions {
            let was = old.func(of);
            match ni.functions.get(fname) {
                None => problems.push(format!("function `{name}.{fname}` is gone")),
                Some(nf) => {
                    let now = new.func(nf);
                    if was != now {
                        problems.push(format!(
                            "function `{name}.{fname}` changed:\n  was {was}\n  now {now}"
                        ));
                    }
                }
            }
        }
    }

    for (wname, &owid) in &op.worlds {
        let Some(&nwid) = np.worlds.get(wname) else {
            problems.push(format!("world `{wname}` is gone"));
            continue;
        };
        let (ow, nw) = (&old.resolve.worlds[owid], &new.resolve.worlds[nwid]);
        for (what, oitems, nitems) in [
            ("import", &ow.imports, &nw.imports),
            ("export", &ow.exports, &nw.exports),
        ] {
            for (okey, oitem) in oitems {
                let key = old.key(okey);
                let was = old.item(oitem);
                match nitems.iter().find(|(nkey, _)| new.key(nkey) == key) {
                    None => problems.push(format!("world `{wname}` no longer {what}s `{key}`")),
                    Some((_, nitem)) => {
                        let now = new.item(nitem);
                        if was != now {
                            problems.push(format!(
                                "world `{wname}` {what} `{key}` changed:\n  was {was}\n  now {now}"
                            ));
                        }
                    }
                }
            }
        }
        for nkey in nw.exports.keys() {
            let key = new.key(nkey);
            if !ow.exports.keys().any(|okey| old.key(okey) == key) {
                problems.push(format!(
                    "world `{wname}` gained the export `{key}`, which rules built against {on} \
                     do not have (a new export needs a new version)"
                ));
            }
        }
    }
    problems
}

fn wit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit")
}

/// Every released snapshot: (file name, text).
fn snapshots() -> Vec<(String, String)> {
    let dir = wit_dir().join("released");
    let mut found: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wit"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    found.sort();
    found
}

fn released_0_1_0() -> String {
    let path = wit_dir().join("released/sluice-rules-0.1.0.wit");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `(major, minor)` track of a package version.
fn track(wit: &Wit) -> (u64, u64) {
    let v = wit.resolve.packages[wit.pkg]
        .name
        .version
        .as_ref()
        .expect("a versioned package");
    (v.major, v.minor)
}

#[test]
fn the_current_wit_is_sluice_rules_0_2_and_released() {
    let current = Wit::dir(&wit_dir());
    let name = &current.resolve.packages[current.pkg].name;
    assert_eq!(
        (name.namespace.as_str(), name.name.as_str()),
        ("sluice", "rules")
    );
    assert_eq!(track(&current), (0, 2), "{name}");
    let text = std::fs::read_to_string(wit_dir().join("rules.wit")).unwrap();
    let version = name.version.as_ref().unwrap();
    let snapshot = wit_dir().join(format!("released/sluice-rules-{version}.wit"));
    assert_eq!(
        std::fs::read_to_string(&snapshot).ok().as_deref(),
        Some(text.as_str()),
        "{} must be a verbatim copy of rules.wit",
        snapshot.display()
    );
}

#[test]
fn every_released_version_is_still_served() {
    let current = Wit::dir(&wit_dir());
    let snapshots = snapshots();
    assert!(
        snapshots.iter().any(|(n, _)| n == "sluice-rules-0.1.0.wit"),
        "{snapshots:?}"
    );
    // The host's 0.1 bindings: the newest 0.1 snapshot.
    let bindings = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/src/bindings.rs"),
    )
    .unwrap();
    let served_0_1 = "sluice-rules-0.1.5.wit";
    assert!(
        bindings.contains(&format!("wit/released/{served_0_1}")),
        "the host's 0.1 bindings are generated from {served_0_1}"
    );
    let newest_0_1 = snapshots
        .iter()
        .filter(|(n, _)| n.starts_with("sluice-rules-0.1."))
        .map(|(n, _)| n.clone())
        .max_by_key(|n| {
            n.trim_start_matches("sluice-rules-0.1.")
                .trim_end_matches(".wit")
                .parse::<u32>()
                .unwrap()
        });
    assert_eq!(newest_0_1.as_deref(), Some(served_0_1));
    let (_, text_0_1) = snapshots.iter().find(|(n, _)| n == served_0_1).unwrap();
    let host_0_1 = Wit::text(served_0_1, text_0_1);
    for (name, text) in &snapshots {
        let old = Wit::text(name, text);
        let version = old.resolve.packages[old.pkg].name.to_string();
        assert_eq!(
            format!(
                "sluice-rules-{}.wit",
                version.trim_start_matches("sluice:rules@")
            ),
            *name,
            "a snapshot's file name is its version"
        );
        let serving = if track(&old) == track(&current) {
            &current
        } else if track(&old) == (0, 1) {
            &host_0_1
        } else {
            panic!("{name}: the host serves no WIT of this track")
        };
        let problems = incompatibilities(&old, serving);
        let widened = APPENDABLE.iter().any(|t| {
            let (iface, ty) = t.split_once('.').unwrap();
            let kind = |w: &Wit| {
                let p = &w.resolve.packages[w.pkg];
                let i = &w.resolve.interfaces[*p.interfaces.get(iface)?];
                Some(w.kind(&w.resolve.types[*i.types.get(ty)?].kind))
            };
            kind(&old) != kind(serving)
        });
        if widened {
            assert!(
                bindings.contains(&format!("wit/released/{name}")),
                "{name}: a type rules produce gained cases since, so the host needs bindings of \
                 {name} to type-check rules built against it"
            );
        }
        assert!(
            problems.is_empty(),
            "the host's WIT breaks rules built against {name}:\n- {}\n(see wit/README.md, Versioning)",
            problems.join("\n- ")
        );
    }
}

/// The check itself: what the rule allows passes, what it forbids is caught.
#[test]
fn the_check_tells_additions_from_breaking_changes() {
    let base = released_0_1_0();
    let old = Wit::text("old.wit", &base);
    let edit = |from: &str, to: &str| {
        assert!(base.contains(from), "{from:?} not in the snapshot");
        Wit::text("new.wit", &base.replacen(from, to, 1))
    };
    let compatible = [
        edit("package sluice:rules@0.1.0;", "package sluice:rules@0.1.4;"),
        edit(
            "        raw: func() -> list<u8>;\n",
            "        raw: func() -> list<u8>;\n        reply-to: func() -> option<string>;\n",
        ),
        edit(
            "    log: func(level: level, msg: string);\n",
            "    log: func(level: level, msg: string);\n    now: func() -> u64;\n",
        ),
        edit(
            "/// What the host offers every rule.",
            "interface dns {\n    lookup: func(name: string) -> list<string>;\n}\n\n///",
        ),
        Wit::text(
            "new.wit",
            &base
                .replacen(
                    "    import host;\n",
                    "    import host;\n    import dns;\n",
                    1,
                )
                .replacen(
                    "/// What the host offers every rule.",
                    "interface dns {\n    lookup: func(name: string) -> list<string>;\n}\n\n///",
                    1,
                ),
        ),
    ];
    for (i, new) in compatible.iter().enumerate() {
        assert_eq!(
            incompatibilities(&old, new),
            Vec::<String>::new(),
            "case {i}"
        );
    }

    let breaking = [
        (
            edit("package sluice:rules@0.1.0;", "package sluice:rules@0.2.0;"),
            "not a compatible successor",
        ),
        (
            edit(
                "        unknown,\n    }",
                "        unknown,\n        other,\n    }",
            ),
            "type `types.verdict` changed",
        ),
        (
            edit(
                "        virus: verdict,\n",
                "        virus: verdict,\n        phish: verdict,\n",
            ),
            "type `types.verdicts` changed",
        ),
        (
            edit("size: func() -> u64;", "size: func() -> u32;"),
            "function `types.[method]message.size` changed",
        ),
        (
            edit("        raw: func() -> list<u8>;\n", ""),
            "function `types.[method]message.raw` is gone",
        ),
        (
            edit(
                "    log: func(level: level, msg: string);",
                "    log: func(level: level, msg: string, step: string);",
            ),
            "function `host.log` changed",
        ),
        (
            edit(
                "    export evaluate:",
                "    export describe: func() -> string;\n    export evaluate:",
            ),
            "gained the export `describe`",
        ),
        (
            edit("world rule {", "world rule2 {"),
            "world `rule` is gone",
        ),
        (
            edit("    import host;\n", ""),
            "no longer imports `sluice:rules/host`",
        ),
    ];
    for (new, expected) in &breaking {
        let problems = incompatibilities(&old, new);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected:?} not in {problems:#?}"
        );
    }
}

/// The one exception (0.2.1): cases appended to `action`, and nothing else of the kind.
#[test]
fn only_cases_appended_to_action_pass() {
    let path = wit_dir().join("released/sluice-rules-0.2.0.wit");
    let base = std::fs::read_to_string(&path).unwrap();
    let old = Wit::text("old.wit", &base);
    let edit = |from: &str, to: &str| {
        assert!(base.contains(from), "{from:?} not in the snapshot");
        let text =
            base.replacen(from, to, 1)
                .replacen("sluice:rules@0.2.0;", "sluice:rules@0.2.1;", 1);
        Wit::text("new.wit", &text)
    };
    let appended = edit(
        "        stop,\n    }",
        "        stop,\n        strip(u32),\n    }",
    );
    assert_eq!(incompatibilities(&old, &appended), Vec::<String>::new());
    for breaking in [
        // A case in front of the others moves every later one.
        edit(
            "        add-header(header),",
            "        strip(u32),\n        add-header(header),",
        ),
        // A case of an enum the host passes to rules.
        edit(
            "        unknown,\n    }",
            "        unknown,\n        maybe,\n    }",
        ),
        // A case removed.
        edit("        stop,\n    }", "    }"),
    ] {
        assert!(!incompatibilities(&old, &breaking).is_empty());
    }
}
