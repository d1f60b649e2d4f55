"""Creates deploy/template.yaml as a stack in moto's CloudFormation, the way `sam deploy` would:
the SAM transform by SAM's own translator (samtranslator), the function's code as an uploaded
zip, then CreateStack. Prints one JSON object with what the services report afterwards, for
tests/all/deploy.rs to assert on.

    python stack_on_moto.py ENDPOINT TEMPLATE PARAMS_JSON

PARAMS_JSON: the stack parameters as a JSON object. The stack is named `sluice`.
"""

import ast
import io
import json
import os
import re
import sys
import time
import zipfile

import boto3
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

REGION = "us-east-1"
STACK = "sluice"
ARTIFACTS = "sluice-sam-artifacts"


class NoManagedPolicies:
    """The template names no managed policy by name, so the translator needs no IAM lookup."""

    def load(self):
        return {}


# Resource types whose attributes moto's CloudFormation cannot read.
UNMODELLED_ATTRIBUTES = {"AWS::Lambda::Url"}


def client(endpoint, name):
    return boto3.client(
        name,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def package(endpoint, template):
    """What `sam package` does to the functions: their code becomes a zip in an S3 bucket."""
    s3 = client(endpoint, "s3")
    s3.create_bucket(Bucket=ARTIFACTS)
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n")
    s3.put_object(Bucket=ARTIFACTS, Key="sluice.zip", Body=zipped.getvalue())
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://%s/sluice.zip" % ARTIFACTS
    return template


def main():
    # The translator fills AWS::Region from boto's default session.
    os.environ["AWS_DEFAULT_REGION"] = REGION
    endpoint, path, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    with open(path) as f:
        template = package(endpoint, yaml_parse(f.read()))
    translated = transform(template, params, NoManagedPolicies())
    # moto's CloudFormation crashes on an output that reads an attribute of a resource type
    # it does not model (the function URL): such outputs are left out, and reported.
    dropped_outputs = []
    for key, output in list(translated.get("Outputs", {}).items()):
        target = (output.get("Value") or {}).get("Fn::GetAtt", [None])[0]
        if translated["Resources"].get(target, {}).get("Type") in UNMODELLED_ATTRIBUTES:
            dropped_outputs.append(key)
            del translated["Outputs"][key]

    cfn = client(endpoint, "cloudformation")
    cfn.create_stack(
        StackName=STACK,
        TemplateBody=json.dumps(translated),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    deadline = time.time() + 60
    while True:
        stack = cfn.describe_stacks(StackName=STACK)["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS") or time.time() > deadline:
            break
        time.sleep(0.2)
    resources = {
        r["LogicalResourceId"]: {
            "type": r["ResourceType"],
            "id": r.get("PhysicalResourceId"),
            "status": r["ResourceStatus"],
        }
        for r in cfn.describe_stack_resources(StackName=STACK)["StackResources"]
        # moto lists a resource type it does not model as an entry without a name.
        if r.get("LogicalResourceId")
    }
    resolver = Resolver(endpoint, translated, params, resources)
    unmodelled = []
    pending = [
        name
        for name, resource in translated["Resources"].items()
        if name not in resources and resolver.condition(resource.get("Condition"))
    ]
    # In dependency order: a resource whose references are not created yet waits a round.
    while pending:
        waiting = []
        for name in pending:
            resource = translated["Resources"][name]
            try:
                props = resolver.value(resource["Properties"])
            except Unresolved:
                waiting.append(name)
                continue
            how, physical = create_directly(endpoint, name, resource["Type"], props)
            unmodelled.append({"name": name, "type": resource["Type"], "created": how})
            resources[name] = {"type": resource["Type"], "id": physical, "status": how}
        if len(waiting) == len(pending):
            raise SystemExit("cannot resolve the references of " + ", ".join(waiting))
        pending = waiting
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    report = {
        "status": stack["StackStatus"],
        "reason": stack.get("StackStatusReason"),
        "translated": translated,
        "resources": resources,
        "outputs": outputs,
        "unmodelled": unmodelled,
        "dropped_outputs": dropped_outputs,
        "services": services(endpoint, resources),
    }
    json.dump(report, sys.stdout, default=str)


class Resolver:
    """Evaluates the intrinsic functions of the translated template against the created stack,
    for the resources moto's CloudFormation accepts without modelling them."""

    def __init__(self, endpoint, template, params, resources):
        self.endpoint = endpoint
        self.template = template
        self.params = dict(params)
        for name, spec in template.get("Parameters", {}).items():
            if name not in self.params and "Default" in spec:
                self.params[name] = str(spec["Default"])
        self.params.update(
            {
                "AWS::AccountId": "123456789012",
                "AWS::Region": REGION,
                "AWS::Partition": "aws",
                "AWS::StackName": STACK,
            }
        )
        self.resources = resources

    def condition(self, name):
        if name is None:
            return True
        return self.value(self.template["Conditions"][name])

    def ref(self, name):
        if name in self.params:
            return self.params[name]
        if name not in self.resources:
            raise Unresolved(name)
        return self.resources[name]["id"]

    def attribute(self, name, attribute):
        if name not in self.resources:
            raise Unresolved(name)
        kind, physical = self.resources[name]["type"], self.resources[name]["id"]
        if attribute == "Arn":
            if kind == "AWS::S3::Bucket":
                return "arn:aws:s3:::" + physical
            if kind == "AWS::SQS::Queue":
                return "arn:aws:sqs:%s:123456789012:%s" % (REGION, physical.rsplit("/", 1)[1])
            if kind == "AWS::IAM::Role":
                return client(self.endpoint, "iam").get_role(RoleName=physical)["Role"]["Arn"]
            if kind == "AWS::Logs::LogGroup":
                return "arn:aws:logs:%s:123456789012:log-group:%s:*" % (REGION, physical)
            if kind == "AWS::Lambda::Function":
                return client(self.endpoint, "lambda").get_function_configuration(
                    FunctionName=physical
                )["FunctionArn"]
        if attribute == "QueueName" and kind == "AWS::SQS::Queue":
            return physical.rsplit("/", 1)[1]
        raise ValueError("cannot resolve %s.%s (%s)" % (name, attribute, kind))

    def value(self, v):
        if isinstance(v, list):
            return [x for x in (self.value(x) for x in v) if x is not NO_VALUE]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (key, arg), = v.items()
            if key == "Ref":
                return NO_VALUE if arg == "AWS::NoValue" else self.ref(arg)
            if key == "Fn::GetAtt":
                name, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.attribute(name, attribute)
            if key == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.value(arg[1]))
                return re.sub(r"\$\{([^}]+)\}", lambda m: self.sub(m.group(1), extra), text)
            if key == "Fn::If":
                name, yes, no = arg
                return self.value(yes if self.condition(name) else no)
            if key == "Fn::Equals":
                a, b = self.value(arg)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self.value(arg[0])
            if key == "Fn::Join":
                return arg[0].join(str(x) for x in self.value(arg[1]))
            if key == "Fn::FindInMap":
                m, top, second = self.value(arg)
                return self.template["Mappings"][m][top][second]
            if key == "Condition":
                return self.condition(arg)
        out = {}
        for k, x in v.items():
            x = self.value(x)
            if x is not NO_VALUE:
                out[k] = x
        return out

    def sub(self, name, extra):
        if name in extra:
            return str(extra[name])
        if "." in name:
            return str(self.attribute(*name.split(".", 1)))
        return str(self.ref(name))


NO_VALUE = object()


class Unresolved(Exception):
    """A reference to a resource not created yet."""


def create_directly(endpoint, name, kind, props):
    """Creates a resource moto's CloudFormation does not model through its own service's API,
    from the template's (resolved) properties. Returns how, for the test's one-line note."""
    if kind == "AWS::S3::BucketPolicy":
        client(endpoint, "s3").put_bucket_policy(
            Bucket=props["Bucket"], Policy=json.dumps(props["PolicyDocument"])
        )
        return "s3:PutBucketPolicy", props["Bucket"]
    if kind == "AWS::SNS::TopicPolicy":
        for topic in props["Topics"]:
            client(endpoint, "sns").set_topic_attributes(
                TopicArn=topic,
                AttributeName="Policy",
                AttributeValue=json.dumps(props["PolicyDocument"]),
            )
        return "sns:SetTopicAttributes Policy", None
    if kind == "AWS::SQS::QueuePolicy":
        for queue in props["Queues"]:
            client(endpoint, "sqs").set_queue_attributes(
                QueueUrl=queue, Attributes={"Policy": json.dumps(props["PolicyDocument"])}
            )
        return "sqs:SetQueueAttributes Policy", None
    if kind == "AWS::SNS::Subscription":
        attributes = {}
        if "RawMessageDelivery" in props:
            attributes["RawMessageDelivery"] = str(props["RawMessageDelivery"]).lower()
        arn = client(endpoint, "sns").subscribe(
            TopicArn=props["TopicArn"],
            Protocol=props["Protocol"],
            Endpoint=props["Endpoint"],
            Attributes=attributes,
            ReturnSubscriptionArn=True,
        )["SubscriptionArn"]
        return "sns:Subscribe", arn
    if kind == "AWS::SES::ReceiptRuleSet":
        client(endpoint, "ses").create_receipt_rule_set(RuleSetName=props["RuleSetName"])
        return "ses:CreateReceiptRuleSet", props["RuleSetName"]
    if kind == "AWS::SES::ReceiptRule":
        client(endpoint, "ses").create_receipt_rule(
            RuleSetName=props["RuleSetName"], Rule=props["Rule"]
        )
        return "ses:CreateReceiptRule", props["Rule"]["Name"]
    if kind == "AWS::CloudWatch::Alarm":
        props = dict(props)
        # CloudFormation would name it <stack>-<logical id>-<suffix>.
        props["AlarmName"] = props.get("AlarmName") or "%s-%s" % (STACK, name)
        for number in ("Period", "EvaluationPeriods", "Threshold"):
            if number in props:
                props[number] = float(props[number]) if number == "Threshold" else int(props[number])
        for metric in props.get("Metrics", []):
            if "Period" in metric:
                metric["Period"] = int(metric["Period"])
            if "MetricStat" in metric:
                metric["MetricStat"]["Period"] = int(metric["MetricStat"]["Period"])
        client(endpoint, "cloudwatch").put_metric_alarm(**props)
        return "cloudwatch:PutMetricAlarm", props["AlarmName"]
    if kind == "AWS::Lambda::Url":
        url = client(endpoint, "lambda").create_function_url_config(
            FunctionName=props["TargetFunctionArn"], AuthType=props["AuthType"]
        )
        return "lambda:CreateFunctionUrlConfig", url["FunctionUrl"]
    raise ValueError("moto's CloudFormation does not model %s and the test cannot create it" % kind)


def services(endpoint, resources):
    """What each service holds for the stack's resources; a failed call is recorded as
    {"error": ...} so the test can say which resource moto does not model."""
    out = {}

    def ask(key, call):
        try:
            out[key] = call()
        except Exception as e:  # noqa: BLE001 - reported to the test, which decides
            out[key] = {"error": "%s: %s" % (type(e).__name__, e)}

    def physical(name):
        return (resources.get(name) or {}).get("id")

    lam = client(endpoint, "lambda")
    ask(
        "alias_api_url",
        lambda: lam.get_function_url_config(FunctionName=physical("AliasApiFunction")),
    )
    ask(
        "alias_api_function",
        lambda: lam.get_function(FunctionName=physical("AliasApiFunction"))["Configuration"],
    )

    s3 = client(endpoint, "s3")
    bucket = physical("MailBucket")
    ask("bucket_policy", lambda: json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]))
    ask(
        "bucket_lifecycle",
        lambda: s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"],
    )
    ask(
        "bucket_encryption",
        lambda: s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"],
    )

    sqs = client(endpoint, "sqs")
    for name in ("InboundQueue", "DeadLetterQueue"):
        ask(
            name,
            lambda n=name: sqs.get_queue_attributes(
                QueueUrl=physical(n), AttributeNames=["All"]
            )["Attributes"],
        )

    sns = client(endpoint, "sns")
    topic = physical("InboundTopic")
    ask(
        "subscriptions",
        lambda: [
            dict(s, Attributes=sns.get_subscription_attributes(SubscriptionArn=s["SubscriptionArn"])["Attributes"])
            for s in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
        ],
    )
    ask("topic", lambda: sns.get_topic_attributes(TopicArn=topic)["Attributes"])
    if physical("AlarmTopic"):
        ask(
            "alarm_subscriptions",
            lambda: sns.list_subscriptions_by_topic(TopicArn=physical("AlarmTopic"))[
                "Subscriptions"
            ],
        )

    lam = client(endpoint, "lambda")
    function = physical("SluiceFunction")
    ask("function", lambda: lam.get_function_configuration(FunctionName=function))
    ask(
        "event_source_mappings",
        lambda: lam.list_event_source_mappings(FunctionName=function)["EventSourceMappings"],
    )

    iam = client(endpoint, "iam")
    role = physical("SluiceRole")
    ask(
        "role_policies",
        lambda: {
            p: iam.get_role_policy(RoleName=role, PolicyName=p)["PolicyDocument"]
            for p in iam.list_role_policies(RoleName=role)["PolicyNames"]
        },
    )
    ask("role", lambda: iam.get_role(RoleName=role)["Role"])
    # moto keeps an inline policy written by CloudFormation as Python's repr of the dict.
    policies = out.get("role_policies")
    if isinstance(policies, dict) and "error" not in policies:
        out["role_policies"] = {
            k: v if isinstance(v, dict) else ast.literal_eval(v) for k, v in policies.items()
        }

    ses = client(endpoint, "ses")
    rule_set = physical("ReceiptRuleSet")
    ask("receipt_rule_set", lambda: ses.describe_receipt_rule_set(RuleSetName=rule_set))

    # The wiring itself: what SES publishes to the topic arrives in the queue as it was sent
    # (raw message delivery: the body is the SES notification, not an SNS envelope).
    def through_topic():
        notice = json.dumps({"notificationType": "Received", "mail": {"messageId": "wiring-1"}})
        sns.publish(TopicArn=topic, Message=notice)
        got = sqs.receive_message(
            QueueUrl=physical("InboundQueue"), MaxNumberOfMessages=10, WaitTimeSeconds=5
        ).get("Messages", [])
        return {"sent": notice, "received": [m["Body"] for m in got]}

    ask("sns_to_sqs", through_topic)

    cw = client(endpoint, "cloudwatch")
    ask("alarms", lambda: cw.describe_alarms(MaxRecords=100)["MetricAlarms"])

    logs = client(endpoint, "logs")
    ask(
        "log_groups",
        lambda: logs.describe_log_groups(logGroupNamePrefix="/aws/lambda/")["logGroups"],
    )
    return out


if __name__ == "__main__":
    main()
