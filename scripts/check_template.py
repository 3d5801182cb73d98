"""Checks of infra/template.yaml beyond what the linters see.

1. Translates the SAM template to plain CloudFormation offline (the SAM translator, with the managed-policy
   map it bundles instead of an IAM call) and runs cfn-lint on the result: some limits (a function's maximum
   timeout, for one) are only checked on the translated resources.
2. Every `${Name}` in each state machine's ASL file is one of its DefinitionSubstitutions, and every Lambda
   function a state invokes is a function the template declares.
3. No IAM policy of the translated template allows an action with a wildcard (`*`, `s3:*`, `s3:Get*`).
4. samconfig.toml: every environment's `sam deploy` parameters name parameters the template declares, with
   values its AllowedValues and MinValue accept, and the Environment parameter matching the environment.

Usage: check_template.py [TEMPLATE]   (exit 1 on any failure; the translated template goes to target/)
"""

import copy
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ManagedPolicies:
    """What the translator asks IAM for (managed policy name -> ARN), from the map it ships with."""

    def __init__(self):
        import samtranslator

        path = os.path.join(os.path.dirname(samtranslator.__file__), "internal", "data", "aws_managed_policies.json")
        with open(path) as f:
            data = json.load(f)
        self.policies = data.get("aws", data)

    def load(self):
        return self.policies


def translate(doc, base):
    """The template as `sam package` then CloudFormation's SAM transform would make it."""
    from samtranslator.translator.transform import transform

    doc = copy.deepcopy(doc)
    function_globals = doc.get("Globals", {}).get("Function", {})
    if isinstance(function_globals.get("CodeUri"), str):
        function_globals["CodeUri"] = "s3://packaged/functions.zip"
    for name, resource in doc.get("Resources", {}).items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function" and isinstance(props.get("CodeUri"), str):
            props["CodeUri"] = f"s3://packaged/{name}.zip"
        if resource["Type"] == "AWS::Serverless::StateMachine" and isinstance(props.get("DefinitionUri"), str):
            with open(os.path.join(base, props.pop("DefinitionUri"))) as f:
                props["Definition"] = json.load(f)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return transform(doc, {}, ManagedPolicies())


def check_state_machines(doc, base):
    failures = []
    resources = doc.get("Resources", {})
    functions = {n for n, r in resources.items() if r["Type"] in ("AWS::Serverless::Function", "AWS::Lambda::Function")}
    for name, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::StateMachine":
            continue
        props = resource["Properties"]
        subs = props.get("DefinitionSubstitutions", {})
        with open(os.path.join(base, props["DefinitionUri"])) as f:
            text = f.read()
        for placeholder in sorted(set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", text))):
            if placeholder not in subs:
                failures.append(f"{name}: ${{{placeholder}}} in {props['DefinitionUri']} has no DefinitionSubstitution")
        invoked = set()

        def walk(states):
            for state_name, state in states.items():
                if state.get("Type") == "Task" and "lambda:invoke" in state.get("Resource", ""):
                    target = state.get("Parameters", state.get("Arguments", {})).get("FunctionName", "")
                    found = re.fullmatch(r"\$\{([A-Za-z0-9_]+)\}(:\$LATEST)?", str(target))
                    if not found:
                        failures.append(f"{name}.{state_name}: FunctionName {target!r} is not a substitution")
                        continue
                    invoked.add((state_name, found.group(1)))
                for nested in ("Iterator", "ItemProcessor"):
                    if nested in state:
                        walk(state[nested]["States"])
                for branch in state.get("Branches", []):
                    walk(branch["States"])

        walk(json.loads(text)["States"])
        for state_name, sub in sorted(invoked):
            value = subs.get(sub)
            target = None
            if isinstance(value, dict):
                att = value.get("Fn::GetAtt") or value.get("Ref")
                target = (att.split(".")[0] if isinstance(att, str) else att[0]) if att else None
            if target not in functions:
                failures.append(f"{name}.{state_name} invokes {sub}, which is not a function of the template")
        if not failures:
            print(f"  {name}: {len(invoked)} Lambda states, every one a function the template declares")
    return failures


def check_wildcards(expanded):
    failures = []

    def statements(policy):
        stmts = policy.get("Statement", [])
        return stmts if isinstance(stmts, list) else [stmts]

    checked = 0
    for name, resource in expanded.get("Resources", {}).items():
        props = resource.get("Properties", {})
        docs = []
        if resource["Type"] == "AWS::IAM::Role":
            docs += [(p.get("PolicyName", "?"), p["PolicyDocument"]) for p in props.get("Policies", [])]
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            docs.append((props.get("PolicyName", name), props["PolicyDocument"]))
        for policy_name, policy in docs:
            for stmt in statements(policy):
                if stmt.get("Effect") != "Allow":
                    continue
                actions = stmt.get("Action", [])
                for action in actions if isinstance(actions, list) else [actions]:
                    checked += 1
                    if not isinstance(action, str) or "*" in action:
                        failures.append(f"{name} / {policy_name}: allows the wildcard action {action!r}")
        for arn in props.get("ManagedPolicyArns", []):
            if isinstance(arn, str) and ("AdministratorAccess" in arn or "FullAccess" in arn):
                failures.append(f"{name}: attaches the broad managed policy {arn}")
    if not failures:
        print(f"  {checked} allowed actions in the IAM policies, none a wildcard")
    return failures


def check_samconfig(doc):
    """What `sam deploy --config-env ENV` would pass, checked against the template's parameters."""
    import shlex
    import tomllib

    failures = []
    with open(os.path.join(ROOT, "samconfig.toml"), "rb") as f:
        conf = tomllib.load(f)
    params = doc.get("Parameters", {})
    for env in ("dev", "staging", "prod"):
        deploy = conf.get(env, {}).get("deploy", {}).get("parameters")
        if not deploy:
            failures.append(f"samconfig.toml has no [{env}.deploy.parameters]")
            continue
        for key in ("stack_name", "capabilities"):
            if key not in deploy:
                failures.append(f"samconfig.toml [{env}.deploy.parameters] has no {key}")
        given = dict(item.split("=", 1) for item in shlex.split(deploy.get("parameter_overrides", "")))
        for name, value in given.items():
            spec = params.get(name)
            if spec is None:
                failures.append(f"samconfig.toml {env}: {name} is not a parameter of the template")
                continue
            allowed = spec.get("AllowedValues")
            if allowed and value not in [str(a) for a in allowed]:
                failures.append(f"samconfig.toml {env}: {name}={value} is not one of {allowed}")
            if spec.get("Type") == "Number":
                try:
                    number = float(value)
                except ValueError:
                    failures.append(f"samconfig.toml {env}: {name}={value} is not a number")
                    continue
                if "MinValue" in spec and number < float(spec["MinValue"]):
                    failures.append(f"samconfig.toml {env}: {name}={value} is below {spec['MinValue']}")
        if given.get("Environment") != env:
            failures.append(f"samconfig.toml {env}: Environment must be {env}, is {given.get('Environment')}")
        missing = [n for n, spec in params.items() if "Default" not in spec and n not in given]
        if missing:
            failures.append(f"samconfig.toml {env}: no value for {', '.join(missing)} (the template has no default)")
    if not failures:
        print("  samconfig.toml: dev, staging and prod deploy with parameters the template accepts")
    return failures


def main():
    from samtranslator.yaml_helper import yaml_parse

    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "infra", "template.yaml")
    base = os.path.dirname(os.path.abspath(path))
    with open(path) as f:
        doc = yaml_parse(f.read())
    expanded = translate(doc, base)
    out_dir = os.path.join(ROOT, "target")
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, "template.translated.json")
    with open(out, "w") as f:
        json.dump(expanded, f, indent=1)
    print(f"  translated: {len(expanded['Resources'])} CloudFormation resources in {os.path.relpath(out, ROOT)}")

    failures = []
    lint = subprocess.run([os.path.join(os.path.dirname(sys.executable), "cfn-lint"), out], capture_output=True, text=True)
    if lint.returncode & 2 or lint.returncode & 4:
        failures.append("cfn-lint on the translated template:\n" + lint.stdout + lint.stderr)
    else:
        print("  cfn-lint on the translated template: no errors, no warnings")
    failures += check_state_machines(doc, base)
    failures += check_wildcards(expanded)
    failures += check_samconfig(doc)
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
