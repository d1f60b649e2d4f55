//! The AWS template (`deploy/template.yaml`) passes cfn-lint, with the SAM transform applied
//! (so the function's event source, runtime and architecture are checked as the
//! `AWS::Lambda::*` resources SAM turns them into), and, rendered through that transform, says
//! what `deploy/README.md` says: the alarms and their runbook entries, the figures that follow
//! the function's timeout, and a function role without wildcards.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{json, Value};
use sluice_tests::workspace_root;

/// The cfn-lint version `.ci/run` pins: the last release that lints SAM templates by running
/// the real SAM transform (aws-sam-translator). Later releases check SAM resources against a
/// schema only and miss, e.g., a bad event-source property or an unknown runtime.
const PINNED: &str = "1.53.3";

/// Regions where SES receives mail, to run cfn-lint's region-specific checks against.
const REGIONS: &[&str] = &["us-east-1", "us-west-2", "eu-west-1"];

fn cfn_lint() -> PathBuf {
    let path = std::env::var_os("SLUICE_CFN_LINT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv").join("bin").join("cfn-lint"));
    assert!(
        path.is_file(),
        "cfn-lint not found at {}: run `python3 -m venv .venv && .venv/bin/pip install 'cfn-lint=={PINNED}'` in the workspace (or set SLUICE_CFN_LINT)",
        path.display()
    );
    path
}

#[test]
fn template_passes_cfn_lint_with_the_sam_transform() {
    let lint = cfn_lint();

    // The SAM transform needs aws-sam-translator in cfn-lint's Python environment.
    let python = lint.with_file_name("python");
    if python.is_file() {
        let probe = Command::new(&python)
            .args(["-c", "import samtranslator"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        assert!(
            probe.status.success(),
            "{} cannot import samtranslator, so cfn-lint would not apply the SAM transform: \
             install the pinned version with `{} -m pip install 'cfn-lint=={PINNED}'`\n{}",
            lint.display(),
            python.display(),
            String::from_utf8_lossy(&probe.stderr)
        );
    }

    let template = "deploy/template.yaml";
    assert!(
        workspace_root().join(template).is_file(),
        "{template} is missing"
    );
    let output = Command::new(&lint)
        .current_dir(workspace_root())
        .arg("--regions")
        .args(REGIONS)
        .arg("--")
        .arg(template)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", lint.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim().is_empty(),
        "cfn-lint reported problems in {template} ({}):\n{stdout}{stderr}",
        output.status
    );
}

/// Every example config in `deploy/` (the SES setup, the Dovecot box, the SMTP hand-off)
/// parses and checks: the docs cannot drift from what the code accepts.
#[test]
fn example_configs_parse() {
    let root = workspace_root().join("deploy");
    let mut files: Vec<PathBuf> = ["", "self-hosted"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(root.join(sub)).unwrap())
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    for f in &files {
        // The placeholder a user must replace, standing in for the hash it will be.
        let text = std::fs::read_to_string(f)
            .unwrap()
            .replace("<paste from sluice plugin push>", &"0".repeat(64));
        let base = f.parent().unwrap().to_path_buf();
        let config = sluice_chain::ConfigFile::parse(&f.display().to_string(), base, text)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", f.display()));
        assert!(config.store.is_some(), "{} has no [store]", f.display());
    }
}

/// Renders the template the way cfn-lint does before linting it: decoded (short-form tags such
/// as `!Sub` become `{"Fn::Sub": ...}`) and run through the SAM transform, so the function is
/// the `AWS::Lambda::Function` and `AWS::Lambda::EventSourceMapping` CloudFormation receives.
/// Intrinsic functions stay as they are; [`resolve`] evaluates the few the checks need.
const RENDER: &str = r#"
import json, sys
from cfnlint.decode import decode
from cfnlint.template.transforms._sam import Transform
template, problems = decode(sys.argv[1])
if problems or template is None:
    sys.exit("cannot decode %s: %s" % (sys.argv[1], "; ".join(str(p) for p in problems)))
transform = Transform(sys.argv[1], template, "us-east-1")
problems = transform.transform_template()
if problems:
    sys.exit("SAM transform failed: " + "; ".join(str(p) for p in problems))
json.dump(transform.template(), sys.stdout)
"#;

/// The rendered template, once per test run (the transform takes about a second).
fn rendered() -> &'static Value {
    static RENDERED: OnceLock<Value> = OnceLock::new();
    RENDERED.get_or_init(|| {
        let python = cfn_lint().with_file_name("python");
        let output = Command::new(&python)
            .current_dir(workspace_root())
            .args(["-c", RENDER, "deploy/template.yaml"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        assert!(
            output.status.success(),
            "rendering deploy/template.yaml with {} failed ({}): {}",
            python.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("the rendered template is JSON")
    })
}

/// The properties of resource `name`, which must exist and be of type `kind`.
fn properties<'a>(template: &'a Value, name: &str, kind: &str) -> &'a Value {
    let resource = &template["Resources"][name];
    assert_eq!(resource["Type"], kind, "resource {name}: {resource}");
    &resource["Properties"]
}

/// `value` with `Fn::FindInMap` (literal keys) evaluated against the template's Mappings.
fn resolve(template: &Value, value: &Value) -> Value {
    match value.get("Fn::FindInMap").and_then(Value::as_array) {
        Some(keys) => {
            let keys: Vec<&str> = keys
                .iter()
                .map(|k| k.as_str().expect("literal FindInMap keys"))
                .collect();
            let [map, top, second] = keys[..] else {
                panic!("FindInMap takes three keys: {value}")
            };
            let found = &template["Mappings"][map][top][second];
            assert!(!found.is_null(), "no Mappings.{map}.{top}.{second}");
            found.clone()
        }
        None => value.clone(),
    }
}

/// `value` as a number, after [`resolve`].
fn number(template: &Value, value: &Value) -> f64 {
    let resolved = resolve(template, value);
    resolved
        .as_f64()
        .or_else(|| resolved.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a number: {value}"))
}

/// A string or a list of them (IAM's `Action` and `Resource` take both) as a list.
fn one_or_many(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        one => vec![one],
    }
}

/// Every alarm notifies the alarm topic, in both directions, when AlarmEmail is given; and
/// its description points at its runbook entry, which exists.
fn check_common(name: &str, alarm: &Value, readme: &str) {
    let notify =
        json!({"Fn::If": ["HasAlarmEmail", [{"Ref": "AlarmTopic"}], {"Ref": "AWS::NoValue"}]});
    assert_eq!(alarm["AlarmActions"], notify, "{name}: AlarmActions");
    assert_eq!(alarm["OKActions"], notify, "{name}: OKActions");
    let description = alarm["AlarmDescription"].as_str().unwrap_or_default();
    assert!(
        description.contains(&format!("Runbook: {name}")),
        "{name}: the description names no runbook entry: {description:?}"
    );
    assert!(
        readme.contains(&format!("\n### {name}\n")),
        "{name}: deploy/README.md has no runbook entry `### {name}`"
    );
}

/// A single-metric alarm: namespace, metric, dimension, statistic, period, threshold.
fn check_metric_alarm(
    template: &Value,
    name: &str,
    (namespace, metric): (&str, &str),
    dimension: (&str, Value),
    (statistic, period): (&str, f64),
    threshold: f64,
    treat_missing: &str,
) {
    let alarm = properties(template, name, "AWS::CloudWatch::Alarm");
    assert_eq!(alarm["Namespace"], namespace, "{name}");
    assert_eq!(alarm["MetricName"], metric, "{name}");
    assert_eq!(
        alarm["Dimensions"],
        json!([{"Name": dimension.0, "Value": dimension.1}]),
        "{name}"
    );
    assert_eq!(alarm["Statistic"], statistic, "{name}");
    assert_eq!(number(template, &alarm["Period"]), period, "{name}: Period");
    assert_eq!(number(template, &alarm["EvaluationPeriods"]), 1.0, "{name}");
    assert_eq!(
        number(template, &alarm["Threshold"]),
        threshold,
        "{name}: Threshold"
    );
    assert_eq!(
        alarm["ComparisonOperator"], "GreaterThanThreshold",
        "{name}"
    );
    assert_eq!(alarm["TreatMissingData"], treat_missing, "{name}");
}

/// The function's timeout in seconds, read from the rendered function.
fn function_timeout(template: &Value) -> f64 {
    let function = properties(template, "SluiceFunction", "AWS::Lambda::Function");
    number(template, &function["Timeout"])
}

#[test]
fn alarms_watch_what_the_runbook_describes() {
    let t = rendered();
    let readme = std::fs::read_to_string(workspace_root().join("deploy/README.md")).unwrap();

    // The topic the alarms notify exists exactly when AlarmEmail is given, and mails it.
    let topic = &t["Resources"]["AlarmTopic"];
    assert_eq!(topic["Type"], "AWS::SNS::Topic");
    assert_eq!(topic["Condition"], "HasAlarmEmail");
    assert_eq!(
        topic["Properties"]["Subscription"],
        json!([{"Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"}}])
    );

    let dlq = json!({"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]});
    let inbound = json!({"Fn::GetAtt": ["InboundQueue", "QueueName"]});
    let function = json!({"Ref": "SluiceFunction"});
    let not_breaching = "notBreaching";
    check_metric_alarm(
        t,
        "DeadLetterAlarm",
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
        ("QueueName", dlq),
        ("Maximum", 300.0),
        0.0,
        not_breaching,
    );
    check_metric_alarm(
        t,
        "QueueBacklogAlarm",
        ("AWS/SQS", "ApproximateAgeOfOldestMessage"),
        ("QueueName", inbound),
        ("Maximum", 300.0),
        300.0,
        not_breaching,
    );
    check_metric_alarm(
        t,
        "FunctionErrorsAlarm",
        ("AWS/Lambda", "Errors"),
        ("FunctionName", function.clone()),
        ("Sum", 300.0),
        5.0,
        not_breaching,
    );
    // Duration is in milliseconds; the alarm fires at 80% of the timeout, whatever it is.
    check_metric_alarm(
        t,
        "FunctionDurationAlarm",
        ("AWS/Lambda", "Duration"),
        ("FunctionName", function),
        ("Maximum", 300.0),
        0.8 * function_timeout(t) * 1000.0,
        not_breaching,
    );

    // Breaker open: one Metrics Insights query over every step of the domain (an alarm
    // cannot use SEARCH), summed into one series.
    let breaker = properties(t, "BreakerOpenAlarm", "AWS::CloudWatch::Alarm");
    let queries = breaker["Metrics"]
        .as_array()
        .expect("BreakerOpenAlarm: Metrics");
    assert_eq!(queries.len(), 1, "{queries:?}");
    let query = &queries[0];
    assert_eq!(query["ReturnData"], true);
    assert_eq!(number(t, &query["Period"]), 300.0);
    let sql = query["Expression"]["Fn::Sub"]
        .as_str()
        .expect("BreakerOpenAlarm: the query is a Fn::Sub over DomainName");
    for part in [
        "SELECT SUM(StepSkipped)",
        r#"FROM SCHEMA("Sluice", Domain, Step)"#,
        "WHERE Domain = '${DomainName}'",
    ] {
        assert!(
            sql.contains(part),
            "BreakerOpenAlarm: {sql:?} lacks {part:?}"
        );
    }
    assert!(!sql.contains("GROUP BY"), "one aggregated series: {sql:?}");
    assert_eq!(number(t, &breaker["Threshold"]), 0.0);
    assert_eq!(breaker["ComparisonOperator"], "GreaterThanThreshold");
    assert_eq!(number(t, &breaker["EvaluationPeriods"]), 1.0);
    assert_eq!(breaker["TreatMissingData"], not_breaching);

    // Tempfail rate: Tempfailed / Received of the domain over 15 minutes, in percent, only
    // past a minimum of received recipients.
    let rate = properties(t, "TempfailRateAlarm", "AWS::CloudWatch::Alarm");
    let queries = rate["Metrics"]
        .as_array()
        .expect("TempfailRateAlarm: Metrics");
    let by_id = |id: &str| {
        queries
            .iter()
            .find(|q| q["Id"] == id)
            .unwrap_or_else(|| panic!("TempfailRateAlarm has no query {id}: {queries:?}"))
    };
    for (id, metric) in [("tempfailed", "Tempfailed"), ("received", "Received")] {
        let q = by_id(id);
        assert_eq!(
            q["MetricStat"]["Metric"],
            json!({"Namespace": "Sluice", "MetricName": metric,
                   "Dimensions": [{"Name": "Domain", "Value": {"Ref": "DomainName"}}]}),
            "TempfailRateAlarm: {id}"
        );
        assert_eq!(q["MetricStat"]["Stat"], "Sum", "{id}");
        assert_eq!(number(t, &q["MetricStat"]["Period"]), 900.0, "{id}");
        assert_eq!(q["ReturnData"], false, "{id}");
    }
    let returned: Vec<&Value> = queries.iter().filter(|q| q["ReturnData"] == true).collect();
    assert_eq!(returned.len(), 1, "one series to alarm on: {queries:?}");
    let expression = returned[0]["Expression"].as_str().unwrap();
    assert_eq!(
        expression, "IF(received >= 20, 100 * tempfailed / received, 0)",
        "TempfailRateAlarm: the rate, in percent, past a minimum of 20 received"
    );
    assert_eq!(number(t, &rate["Threshold"]), 10.0, "10 percent");
    assert_eq!(rate["ComparisonOperator"], "GreaterThanThreshold");
    assert_eq!(number(t, &rate["EvaluationPeriods"]), 1.0);
    assert_eq!(rate["TreatMissingData"], not_breaching);

    // The Sluice metrics the alarms read are the ones the function emits.
    let emf =
        std::fs::read_to_string(workspace_root().join("host/telemetry/src/metrics.rs")).unwrap();
    assert!(emf.contains(r#"pub const NAMESPACE: &str = "Sluice";"#));
    for metric in ["StepSkipped", "Tempfailed", "Received"] {
        assert!(
            emf.contains(&format!("\"{metric}\"")),
            "host/telemetry/src/metrics.rs emits no {metric}"
        );
    }

    // Every alarm in the stack is one of these and has its runbook entry.
    let mut alarms: Vec<&str> = t["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Alarm")
        .map(|(name, _)| name.as_str())
        .collect();
    alarms.sort_unstable();
    assert_eq!(
        alarms,
        [
            "BreakerOpenAlarm",
            "DeadLetterAlarm",
            "FunctionDurationAlarm",
            "FunctionErrorsAlarm",
            "QueueBacklogAlarm",
            "ResentAlarm",
            "TempfailRateAlarm",
            "UnconfirmedSendAlarm",
            "UndeliverableAlarm"
        ]
    );
    // The delivery alarms: any one copy resent, left unconfirmed or undeliverable in 5
    // minutes, on the dimensionless metrics host/telemetry emits for them.
    for (name, metric) in [
        ("ResentAlarm", "Resent"),
        ("UndeliverableAlarm", "Undeliverable"),
        ("UnconfirmedSendAlarm", "Unconfirmed"),
    ] {
        let alarm = properties(t, name, "AWS::CloudWatch::Alarm");
        assert_eq!(alarm["Namespace"], "Sluice", "{name}");
        assert_eq!(alarm["MetricName"], metric, "{name}");
        assert!(alarm["Dimensions"].is_null(), "{name}: the metric has none");
        assert_eq!(alarm["Statistic"], "Sum", "{name}");
        assert_eq!(number(t, &alarm["Threshold"]), 0.0, "{name}");
        assert_eq!(
            alarm["ComparisonOperator"], "GreaterThanThreshold",
            "{name}"
        );
        assert!(
            emf.contains(&format!("(\"{metric}\", \"Count\"")),
            "host/telemetry/src/metrics.rs emits no {metric}"
        );
    }
    for name in alarms {
        check_common(name, &t["Resources"][name]["Properties"], &readme);
    }
}

/// The figures that follow the function's timeout and batch: the queue hides a message for at
/// least 6 timeouts (plus the batching window) so a batch still running is not handed out
/// again, the dead-letter queue catches what keeps failing, and the function handles a whole
/// batch at once.
#[test]
fn queue_and_event_source_follow_the_function() {
    let t = rendered();
    let timeout = function_timeout(t);
    assert!((1.0..=900.0).contains(&timeout), "Timeout {timeout}");

    let mapping = properties(
        t,
        "SluiceFunctionInbound",
        "AWS::Lambda::EventSourceMapping",
    );
    assert_eq!(
        mapping["EventSourceArn"],
        json!({"Fn::GetAtt": ["InboundQueue", "Arn"]})
    );
    assert_eq!(
        mapping["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
    let window = number(t, &mapping["MaximumBatchingWindowInSeconds"]);
    let queue = properties(t, "InboundQueue", "AWS::SQS::Queue");
    let visibility = number(t, &queue["VisibilityTimeout"]);
    assert!(
        visibility >= 6.0 * timeout + window,
        "VisibilityTimeout {visibility} < 6 x Timeout {timeout} + batching window {window}"
    );

    let redrive = &queue["RedrivePolicy"];
    assert_eq!(
        redrive["deadLetterTargetArn"],
        json!({"Fn::GetAtt": ["DeadLetterQueue", "Arn"]})
    );
    let receives = number(t, &redrive["maxReceiveCount"]);
    assert!(receives >= 1.0, "maxReceiveCount {receives}");
    // The DLQ alarm's description states the count.
    let dlq_alarm = &t["Resources"]["DeadLetterAlarm"]["Properties"]["AlarmDescription"];
    assert!(
        dlq_alarm
            .as_str()
            .unwrap_or_default()
            .contains(&format!("received {receives} times")),
        "{dlq_alarm}"
    );

    // SLUICE_CONCURRENCY records of a batch run at once: the whole batch.
    let function = properties(t, "SluiceFunction", "AWS::Lambda::Function");
    let concurrency = number(
        t,
        &function["Environment"]["Variables"]["SLUICE_CONCURRENCY"],
    );
    assert_eq!(
        number(t, &mapping["BatchSize"]),
        concurrency,
        "BatchSize and SLUICE_CONCURRENCY"
    );
    // The queue caps how many instances it invokes; a reservation is optional.
    assert_eq!(
        mapping["ScalingConfig"]["MaximumConcurrency"],
        json!({"Ref": "MaxConcurrency"})
    );
    assert_eq!(
        function["ReservedConcurrentExecutions"],
        json!({"Fn::If": ["HasReservedConcurrency", {"Ref": "ReservedConcurrency"}, {"Ref": "AWS::NoValue"}]})
    );
    let parameters = &t["Parameters"];
    assert!(number(t, &parameters["MaxConcurrency"]["MinValue"]) >= 2.0);
}

/// The function's role: SAM generated none (its SQS event would attach a policy for every
/// queue), no statement allows every action of a service or every resource, and S3 access is
/// limited to the mail bucket. Nothing the function does needs `Resource: "*"`: its metrics
/// are EMF log lines, not `cloudwatch:PutMetricData`. The one exception is AWS's managed
/// `AWSLambdaVPCAccessExecutionRole`, attached only in a VPC, whose EC2 network-interface
/// actions AWS offers only on `*`.
#[test]
fn the_function_role_grants_no_wildcards() {
    let t = rendered();
    let roles: Vec<&String> = t["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::IAM::Role")
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        roles,
        ["AliasApiRole", "SluiceRole"],
        "SAM must not generate a role"
    );
    let function = properties(t, "SluiceFunction", "AWS::Lambda::Function");
    assert_eq!(
        function["Role"],
        json!({"Fn::GetAtt": ["SluiceRole", "Arn"]})
    );

    let role = properties(t, "SluiceRole", "AWS::IAM::Role");
    assert_eq!(
        role["AssumeRolePolicyDocument"]["Statement"],
        json!([{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}])
    );
    assert_eq!(
        role["ManagedPolicyArns"],
        json!({"Fn::If": ["InVpc",
            [{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"}],
            {"Ref": "AWS::NoValue"}]}),
        "the only managed policy is the VPC one, only in a VPC"
    );

    let in_mail_bucket = |resource: &Value| {
        resource == &json!({"Fn::GetAtt": ["MailBucket", "Arn"]})
            || resource["Fn::Sub"]
                .as_str()
                .is_some_and(|s| s.starts_with("arn:${AWS::Partition}:s3:::${MailBucket}/"))
    };
    let policies = role["Policies"].as_array().expect("inline policies");
    let mut s3_statements = 0;
    for policy in policies {
        let name = &policy["PolicyName"];
        for statement in policy["PolicyDocument"]["Statement"].as_array().unwrap() {
            // A statement granted only with an optional parameter (the mailbox KMS key) is
            // `Fn::If [Condition, statement, AWS::NoValue]`: its statement is checked like
            // the others.
            let statement = match statement["Fn::If"].as_array() {
                Some(branches) => {
                    assert_eq!(branches.len(), 3, "{name}: {statement}");
                    assert_eq!(
                        branches[2],
                        json!({"Ref": "AWS::NoValue"}),
                        "{name}: {statement}"
                    );
                    &branches[1]
                }
                None => statement,
            };
            let sid = &statement["Sid"];
            assert_eq!(statement["Effect"], "Allow", "{name}/{sid}");
            assert!(statement["NotAction"].is_null() && statement["NotResource"].is_null());
            let actions: Vec<&str> = one_or_many(&statement["Action"])
                .into_iter()
                .map(|a| a.as_str().expect("literal actions"))
                .collect();
            assert!(!actions.is_empty(), "{name}/{sid}");
            for action in &actions {
                assert!(
                    !action.contains('*'),
                    "{name}/{sid}: wildcard action {action}"
                );
                assert!(
                    !action.starts_with("s3:Delete") && *action != "cloudwatch:PutMetricData",
                    "{name}/{sid}: {action} (the function deletes nothing; metrics are EMF)"
                );
            }
            let resources = one_or_many(&statement["Resource"]);
            assert!(!resources.is_empty(), "{name}/{sid}: no Resource");
            for resource in &resources {
                assert_ne!(*resource, "*", "{name}/{sid}: Resource \"*\"");
                if resource["Ref"].as_str().is_some_and(|p| p.ends_with("Arn")) {
                    continue; // an ARN parameter, checked by its AllowedPattern
                }
                if let Some(arn) = resource["Fn::Sub"].as_str().or(resource.as_str()) {
                    assert!(
                        arn.starts_with("arn:") && !arn.starts_with("arn:*"),
                        "{name}/{sid}: {arn}"
                    );
                }
            }
            if actions.iter().any(|a| a.starts_with("s3:")) {
                s3_statements += 1;
                assert!(
                    actions.iter().all(|a| a.starts_with("s3:")),
                    "{name}/{sid}: S3 actions share a statement with others"
                );
                for resource in &resources {
                    assert!(
                        in_mail_bucket(resource),
                        "{name}/{sid}: S3 access outside the mail bucket: {resource}"
                    );
                }
            }
        }
    }
    assert!(s3_statements >= 3, "read, write and list statements");
}

/// The alias API function exists only with `AliasApiTable`, sits behind a function URL with
/// IAM auth (never public), runs the same bootstrap in alias-api mode, and its role may read
/// the config and edit that table: nothing of the mail path, no wildcard.
#[test]
fn the_alias_api_is_optional_signed_and_confined_to_its_table() {
    let t = rendered();
    for name in [
        "AliasApiFunction",
        "AliasApiRole",
        "AliasApiLogGroup",
        "AliasApiFunctionUrl",
    ] {
        assert_eq!(t["Resources"][name]["Condition"], "HasAliasApi", "{name}");
    }
    let url = properties(t, "AliasApiFunctionUrl", "AWS::Lambda::Url");
    assert_eq!(url["AuthType"], "AWS_IAM");
    assert_eq!(url["TargetFunctionArn"], json!({"Ref": "AliasApiFunction"}));
    let public = t["Resources"].as_object().unwrap().values().any(|r| {
        r["Type"] == "AWS::Lambda::Permission" && r["Properties"]["FunctionUrlAuthType"] == "NONE"
    });
    assert!(!public, "no public function URL permission");

    let function = properties(t, "AliasApiFunction", "AWS::Lambda::Function");
    assert_eq!(
        function["Role"],
        json!({"Fn::GetAtt": ["AliasApiRole", "Arn"]})
    );
    let env = &function["Environment"]["Variables"];
    assert_eq!(env["SLUICE_MODE"], "alias-api");
    assert_eq!(
        env["SLUICE_CONFIG"],
        properties(t, "SluiceFunction", "AWS::Lambda::Function")["Environment"]["Variables"]
            ["SLUICE_CONFIG"]
    );

    let role = properties(t, "AliasApiRole", "AWS::IAM::Role");
    assert!(role.get("ManagedPolicyArns").is_none());
    let statements = role["Policies"][0]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap();
    let mut actions: Vec<String> = Vec::new();
    for statement in statements {
        assert_eq!(statement["Effect"], "Allow");
        for action in one_or_many(&statement["Action"]) {
            let action = action.as_str().unwrap();
            assert!(!action.contains('*'), "{action}");
            actions.push(action.to_string());
        }
        for resource in one_or_many(&statement["Resource"]) {
            assert!(!resource.to_string().contains("/*"), "{resource}");
        }
    }
    actions.sort();
    assert_eq!(
        actions,
        [
            "dynamodb:DeleteItem",
            "dynamodb:DescribeTable",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:Query",
            "logs:CreateLogStream",
            "logs:PutLogEvents",
            "s3:GetObject",
        ]
    );
    let dynamo = statements
        .iter()
        .find(|s| s["Sid"] == "EditAliases")
        .unwrap();
    assert_eq!(
        dynamo["Resource"],
        json!({"Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${AliasApiTable}"})
    );
}

/// The parameter table of `deploy/README.md`, which the `sam deploy --guided` walkthrough
/// (step 2) points at, is the template's parameters in the template's order (the order the
/// prompts come in), with their defaults; the walkthrough's `Name=value` answers name real
/// parameters.
#[test]
fn the_deploy_guide_lists_the_template_parameters() {
    let root = workspace_root();
    let template = std::fs::read_to_string(root.join("deploy/template.yaml")).unwrap();
    let mut in_parameters = false;
    let mut order = Vec::new();
    for line in template.lines() {
        if !line.starts_with(' ') && !line.is_empty() && !line.starts_with('#') {
            in_parameters = line == "Parameters:";
            continue;
        }
        if in_parameters {
            if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
                if !name.starts_with(' ') {
                    order.push(name.to_string());
                }
            }
        }
    }
    let parameters = rendered()["Parameters"].as_object().unwrap();
    let mut sorted = order.clone();
    sorted.sort();
    let mut names: Vec<&String> = parameters.keys().collect();
    names.sort();
    assert_eq!(
        sorted.iter().collect::<Vec<_>>(),
        names,
        "template order read"
    );

    let readme = std::fs::read_to_string(root.join("deploy/README.md")).unwrap();
    let table: Vec<(String, String)> = readme
        .lines()
        .skip_while(|l| !l.starts_with("| parameter | default |"))
        .skip(2)
        .take_while(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].trim_matches('`').to_string(), cells[2].to_string())
        })
        .collect();
    let listed: Vec<&String> = table.iter().map(|(name, _)| name).collect();
    assert_eq!(
        listed,
        order.iter().collect::<Vec<_>>(),
        "deploy/README.md's parameter table, in the template's order"
    );
    for (name, default) in &table {
        let expected = match &parameters[name.as_str()]["Default"] {
            Value::Null => "(required)".to_string(),
            Value::String(s) if s.is_empty() => "(empty)".to_string(),
            Value::String(s) => format!("`{s}`"),
            other => format!("`{other}`"),
        };
        assert_eq!(default, &expected, "{name}: default in deploy/README.md");
    }

    let step = readme
        .split("2. **Deploy the stack**")
        .nth(1)
        .and_then(|s| s.split("3. **").next())
        .expect("step 2 of the deploy guide");
    let answers: Vec<&str> = step
        .split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|code| code.split_once('=').map(|(name, _)| name))
        .filter(|name| name.chars().all(|c| c.is_ascii_alphanumeric()))
        .collect();
    assert!(answers.len() >= 3, "{answers:?}");
    for name in answers {
        assert!(
            parameters.contains_key(name),
            "step 2 answers {name}, which the template does not have"
        );
    }
}
