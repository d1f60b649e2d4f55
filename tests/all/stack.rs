//! `deploy/template.yaml` created as a stack in moto's CloudFormation, as `sam deploy` would
//! create it: SAM's own translator, the function's code uploaded as a zip, `CreateStack`
//! (`tests/support/stack_on_moto.py`). Then the resources are asked what they hold: the mail
//! path is wired end to end (SES rule -> bucket + topic -> queue -> function, DLQ, alarms,
//! role). moto's CloudFormation accepts some resource types without creating anything; the
//! script creates those through their own service's API from the template's resolved
//! properties, and the test prints one line for each.

use std::process::Command;

use serde_json::{json, Value};
use sluice_tests::workspace_root;

const BUCKET: &str = "sluice-mail-test";

/// The report of `stack_on_moto.py` for the stack `sluice` with the alarm email set.
fn create_stack(moto: &sluice_tests::Moto) -> Value {
    let python = workspace_root().join(".venv/bin/python");
    let params = json!({
        "DomainName": "example.com",
        "BucketName": BUCKET,
        "RelayIdentity": "example.com",
        "AlarmEmail": "ops@example.com",
        "AliasApiTable": "sluice-aliases",
    });
    let output = Command::new(&python)
        .current_dir(workspace_root())
        .args([
            "tests/support/stack_on_moto.py",
            &moto.endpoint,
            "deploy/template.yaml",
            &params.to_string(),
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        output.status.success(),
        "stack_on_moto.py failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the report is JSON")
}

/// `value`, a JSON object, unless the script recorded a failed call for it.
fn answered<'a>(report: &'a Value, key: &str) -> &'a Value {
    let value = &report["services"][key];
    assert!(
        value.get("error").is_none() && !value.is_null(),
        "{key}: {value}"
    );
    value
}

fn arn_of_queue(url: &str) -> String {
    let name = url.rsplit('/').next().unwrap();
    format!("arn:aws:sqs:us-east-1:123456789012:{name}")
}

#[test]
fn the_stack_is_created_and_wired_for_the_mail_path() {
    let moto = sluice_tests::Moto::start();
    let report = create_stack(&moto);
    assert_eq!(report["status"], "CREATE_COMPLETE", "{}", report["reason"]);
    let resources = report["resources"].as_object().unwrap();
    let id = |name: &str| -> String {
        resources
            .get(name)
            .and_then(|r| r["id"].as_str())
            .unwrap_or_else(|| panic!("{name} was not created: {resources:?}"))
            .to_string()
    };
    // Every resource of the translated template exists, by CloudFormation or by its API.
    let translated = report["translated"]["Resources"].as_object().unwrap();
    for (name, resource) in translated {
        assert!(
            resources.contains_key(name),
            "{name} ({}) missing",
            resource["Type"]
        );
    }
    for u in report["unmodelled"].as_array().unwrap() {
        println!(
            "moto's CloudFormation does not model {} ({}): created with {} from the template's properties",
            u["type"].as_str().unwrap(),
            u["name"].as_str().unwrap(),
            u["created"].as_str().unwrap()
        );
    }

    // The alias API: its own function in alias-api mode, behind an IAM-signed function URL.
    let url = answered(&report, "alias_api_url");
    assert_eq!(url["AuthType"], "AWS_IAM", "{url}");
    let api = answered(&report, "alias_api_function");
    assert_eq!(api["Environment"]["Variables"]["SLUICE_MODE"], "alias-api");
    assert_eq!(
        api["Role"].as_str().unwrap().rsplit('/').next().unwrap(),
        id("AliasApiRole")
    );

    for output in report["dropped_outputs"].as_array().unwrap() {
        println!("moto's CloudFormation cannot read the attribute output {output} names: left out");
    }

    let topic = id("InboundTopic");
    let queue_url = id("InboundQueue");
    let queue_arn = arn_of_queue(&queue_url);
    let dlq_arn = arn_of_queue(&id("DeadLetterQueue"));
    let function = answered(&report, "function");
    let function_arn = function["FunctionArn"].as_str().unwrap();

    // SES: the rule set and its rule for the domain, storing under the inbound prefix of the
    // stack's bucket and notifying the stack's topic, with the verdicts the rules read.
    let rule_set = answered(&report, "receipt_rule_set");
    assert_eq!(rule_set["Metadata"]["Name"], "sluice-rules");
    let rules = rule_set["Rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "{rule_set}");
    let rule = &rules[0];
    assert_eq!(rule["Name"], "sluice-inbound");
    assert_eq!(rule["Enabled"], true);
    assert_eq!(rule["ScanEnabled"], true);
    assert_eq!(rule["Recipients"], json!(["example.com"]));
    assert_eq!(
        rule["Actions"],
        json!([{"S3Action": {"BucketName": BUCKET, "ObjectKeyPrefix": "incoming/", "TopicArn": topic}}])
    );

    // The bucket lets exactly that rule store under the prefix, and refuses plain HTTP.
    let policy = answered(&report, "bucket_policy");
    let ses_put = &policy["Statement"][0];
    assert_eq!(
        ses_put["Principal"],
        json!({"Service": "ses.amazonaws.com"})
    );
    assert_eq!(ses_put["Action"], "s3:PutObject");
    assert_eq!(
        ses_put["Resource"],
        format!("arn:aws:s3:::{BUCKET}/incoming/*")
    );
    assert_eq!(
        ses_put["Condition"]["ArnLike"]["aws:SourceArn"],
        "arn:aws:ses:us-east-1:123456789012:receipt-rule-set/sluice-rules:receipt-rule/sluice-inbound",
        "the condition names the rule the stack created"
    );
    assert_eq!(policy["Statement"][1]["Effect"], "Deny");
    let encryption = answered(&report, "bucket_encryption");
    assert_eq!(
        encryption["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"],
        "AES256"
    );

    // SNS -> SQS: the topic lets the rule publish; the queue is subscribed with raw delivery
    // and lets the topic send; a published notification arrives as it was sent.
    let topic_policy: Value =
        serde_json::from_str(answered(&report, "topic")["Policy"].as_str().unwrap()).unwrap();
    assert_eq!(topic_policy["Statement"][0]["Action"], "sns:Publish");
    assert_eq!(topic_policy["Statement"][0]["Resource"], topic);
    let subscriptions = answered(&report, "subscriptions").as_array().unwrap();
    assert_eq!(subscriptions.len(), 1, "{subscriptions:?}");
    assert_eq!(subscriptions[0]["Protocol"], "sqs");
    assert_eq!(subscriptions[0]["Endpoint"], queue_arn);
    assert_eq!(subscriptions[0]["Attributes"]["RawMessageDelivery"], "true");
    let through = answered(&report, "sns_to_sqs");
    assert_eq!(through["received"], json!([through["sent"]]));

    // The queue: visibility 6x the function's timeout, redrive to the DLQ after 5 receives.
    let queue = answered(&report, "InboundQueue");
    let queue_policy: Value = serde_json::from_str(queue["Policy"].as_str().unwrap()).unwrap();
    assert_eq!(
        queue_policy["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"],
        topic
    );
    assert_eq!(queue_policy["Statement"][0]["Resource"], queue_arn);
    let timeout = function["Timeout"].as_u64().unwrap();
    assert_eq!(queue["VisibilityTimeout"], (6 * timeout).to_string());
    let redrive: Value = serde_json::from_str(queue["RedrivePolicy"].as_str().unwrap()).unwrap();
    assert_eq!(redrive["deadLetterTargetArn"], dlq_arn);
    assert_eq!(redrive["maxReceiveCount"], 5);
    let dlq = answered(&report, "DeadLetterQueue");
    assert_eq!(dlq["MessageRetentionPeriod"], "1209600");

    // SQS -> function: one mapping from the queue, partial batch responses, the whole batch
    // at once in the function.
    let mappings = answered(&report, "event_source_mappings")
        .as_array()
        .unwrap();
    assert_eq!(mappings.len(), 1, "{mappings:?}");
    let mapping = &mappings[0];
    assert_eq!(mapping["EventSourceArn"], queue_arn);
    assert_eq!(mapping["FunctionArn"], function_arn);
    assert_eq!(
        mapping["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
    assert_eq!(mapping["BatchSize"], 10);
    assert_eq!(mapping["ScalingConfig"]["MaximumConcurrency"], 5);
    assert_eq!(mapping["State"], "Enabled");
    let env = &function["Environment"]["Variables"];
    assert_eq!(
        env["SLUICE_CONFIG"],
        format!("s3://{BUCKET}/config/sluice.toml")
    );
    assert_eq!(env["SLUICE_CONCURRENCY"], "10");
    assert_eq!(function["Runtime"], "provided.al2023");
    assert_eq!(function["Handler"], "bootstrap");
    let role = answered(&report, "role");
    assert_eq!(function["Role"], role["Arn"]);
    println!(
        "moto's Lambda records every function as {} whatever its Architectures: \
         the translated template's value is checked instead",
        function["Architectures"]
    );
    assert_eq!(
        report["translated"]["Resources"]["SluiceFunction"]["Properties"]["Architectures"],
        json!([{"Ref": "Architecture"}])
    );

    // The role: what each statement allows, on the stack's own resources.
    let policies = answered(&report, "role_policies");
    let statements = policies["sluice"]["Statement"].as_array().unwrap();
    let by_sid = |sid: &str| -> &Value {
        statements
            .iter()
            .find(|s| s["Sid"] == sid)
            .unwrap_or_else(|| panic!("no statement {sid}: {statements:?}"))
    };
    assert_eq!(by_sid("ConsumeInboundQueue")["Resource"], queue_arn);
    assert_eq!(
        by_sid("ReadInboundConfigRulesAndMarkers")["Resource"],
        json!([
            format!("arn:aws:s3:::{BUCKET}/incoming/*"),
            format!("arn:aws:s3:::{BUCKET}/config/sluice.toml"),
            format!("arn:aws:s3:::{BUCKET}/rules/*"),
            format!("arn:aws:s3:::{BUCKET}/mailboxes/_sent/*"),
        ])
    );
    assert_eq!(
        by_sid("WriteMailboxesAndMarkers")["Resource"],
        format!("arn:aws:s3:::{BUCKET}/mailboxes/*")
    );
    assert_eq!(
        by_sid("MissingKeysAre404")["Resource"],
        format!("arn:aws:s3:::{BUCKET}")
    );
    assert_eq!(
        by_sid("RelayAsTheVerifiedIdentity")["Resource"],
        "arn:aws:ses:us-east-1:123456789012:identity/example.com"
    );
    let logs = by_sid("Logs")["Resource"].as_str().unwrap();
    assert!(
        logs.starts_with("arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/sluice-sluice"),
        "{logs}"
    );
    if !logs.ends_with(":*") {
        println!(
            "moto's LogGroup.Arn lacks AWS's trailing `:*` ({logs}); AWS's covers the group's streams"
        );
    }
    let groups = answered(&report, "log_groups").as_array().unwrap();
    assert!(
        groups.iter().any(|g| g["logGroupName"] == "/aws/lambda/sluice-sluice"
            && g["retentionInDays"] == 30),
        "{groups:?}"
    );

    // Alarms: all nine, each notifying the alarm topic both ways; the topic mails the address.
    let alarm_topic = id("AlarmTopic");
    let alarms = answered(&report, "alarms").as_array().unwrap();
    let alarm_resources: Vec<&String> = translated
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Alarm")
        .map(|(name, _)| name)
        .collect();
    assert_eq!(alarms.len(), alarm_resources.len(), "{alarms:?}");
    assert_eq!(alarms.len(), 9);
    for alarm in alarms {
        let name = alarm["AlarmName"].as_str().unwrap();
        assert_eq!(alarm["AlarmActions"], json!([alarm_topic]), "{name}");
        assert_eq!(alarm["OKActions"], json!([alarm_topic]), "{name}");
    }
    let dlq_alarm = alarms
        .iter()
        .find(|a| a["AlarmName"] == "sluice-DeadLetterAlarm")
        .unwrap();
    let dlq_name = dlq_arn.rsplit(':').next().unwrap();
    assert_eq!(
        dlq_alarm["Dimensions"],
        json!([{"Name": "QueueName", "Value": dlq_name}]),
        "the DLQ alarm watches the stack's DLQ"
    );
    let mail = answered(&report, "alarm_subscriptions").as_array().unwrap();
    assert_eq!(mail.len(), 1);
    assert_eq!(
        (&mail[0]["Protocol"], &mail[0]["Endpoint"]),
        (&json!("email"), &json!("ops@example.com"))
    );

    // The outputs a deploy prints point at what was created.
    let outputs = &report["outputs"];
    assert_eq!(outputs["QueueUrl"], queue_url);
    assert_eq!(outputs["DeadLetterQueueArn"], dlq_arn);
    assert_eq!(outputs["FunctionArn"], function_arn);
    assert_eq!(outputs["TopicArn"], topic);
    assert_eq!(
        outputs["ConfigUrl"],
        format!("s3://{BUCKET}/config/sluice.toml")
    );
    let lifecycle = &report["services"]["bucket_lifecycle"];
    let rules = match lifecycle.as_array() {
        Some(rules) => rules.clone(),
        None => {
            println!(
                "moto's CloudFormation drops the bucket's LifecycleConfiguration ({}): \
                 the translated template's rules are checked instead",
                lifecycle["error"]
            );
            translated["MailBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
                .as_array()
                .unwrap()
                .clone()
        }
    };
    let ids: Vec<&str> = rules.iter().filter_map(|r| r["Id"].as_str()).collect();
    assert_eq!(
        ids,
        [
            "expire-inbound",
            "expire-relay-markers",
            "abort-incomplete-uploads"
        ]
    );
}
