"""The sandbox's Secrets Manager resource types: secrets (with a generated password, as
`GenerateSecretString` asks) and target attachments, which write a database's
connection details (engine, host, port, identifier) into its secret the way
CloudFormation does for RDS.
"""

from __future__ import annotations

import json
from typing import Any

from moto.rds.models import rds_backends
from moto.secretsmanager.models import secretsmanager_backends

from hivemind.sandbox.provisioning import (
    Context,
    MotoBackend,
    Provisioned,
    ResourceType,
    as_bool,
    implements,
    random_suffix,
    tag_list,
)


def _secrets(ctx: Context) -> MotoBackend:
    return secretsmanager_backends[ctx.account_id][ctx.region]


def generate_secret_string(backend: MotoBackend, spec: dict[str, Any]) -> str:
    """The secret text `GenerateSecretString` describes: a random password, alone or put
    under `GenerateStringKey` in the JSON of `SecretStringTemplate`."""
    password = json.loads(
        backend.get_random_password(
            password_length=int(spec.get("PasswordLength", 32)),
            exclude_characters=spec.get("ExcludeCharacters", ""),
            exclude_numbers=as_bool(spec.get("ExcludeNumbers")),
            exclude_punctuation=as_bool(spec.get("ExcludePunctuation")),
            exclude_uppercase=as_bool(spec.get("ExcludeUppercase")),
            exclude_lowercase=as_bool(spec.get("ExcludeLowercase")),
            include_space=as_bool(spec.get("IncludeSpace")),
            require_each_included_type=as_bool(spec.get("RequireEachIncludedType"), True),
        )
    )["RandomPassword"]
    template = spec.get("SecretStringTemplate")
    key = spec.get("GenerateStringKey")
    if template is None or key is None:
        return str(password)
    document = json.loads(template)
    document[key] = password
    return json.dumps(document)


@implements
class Secret(ResourceType):
    type_name = "AWS::SecretsManager::Secret"
    attributes = frozenset({"Id"})

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        backend = _secrets(ctx)
        if properties.get("GenerateSecretString") is not None:
            secret_string = generate_secret_string(backend, properties["GenerateSecretString"])
        else:
            secret_string = properties.get("SecretString") or ""
        # CloudFormation names an unnamed secret after its logical id.
        name = properties.get("Name") or f"{ctx.logical_id[:40]}-{random_suffix(12)}"
        created = json.loads(
            backend.create_secret(
                name=name,
                secret_string=secret_string,
                secret_binary=None,
                description=properties.get("Description"),
                tags=tag_list(ctx.tags(properties)),
                kms_key_id=properties.get("KmsKeyId"),
                client_request_token=None,
                replica_regions=[],
                force_overwrite=False,
            )
        )
        arn = str(created["ARN"])

        def delete() -> None:
            # CloudFormation deletes a stack's secret without a recovery window.
            backend.delete_secret(arn, None, force_delete_without_recovery=True)

        return Provisioned(arn, delete=delete, attributes={"Id": arn})

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        if properties.get("Name") != old.properties.get("Name"):
            return self.create(properties, ctx)
        backend = _secrets(ctx)
        arn = old.physical_resource_id
        secret = backend.describe_secret(arn)
        secret.description = properties.get("Description")
        if properties.get("GenerateSecretString") != old.properties.get("GenerateSecretString"):
            text = generate_secret_string(backend, properties.get("GenerateSecretString") or {})
            backend.put_secret_value(arn, text, None, None, ["AWSCURRENT"])
        elif properties.get("SecretString") != old.properties.get("SecretString"):
            backend.put_secret_value(
                arn, properties.get("SecretString") or "", None, None, ["AWSCURRENT"]
            )
        return old


@implements
class SecretTargetAttachment(ResourceType):
    type_name = "AWS::SecretsManager::SecretTargetAttachment"
    attributes = frozenset()

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        backend = _secrets(ctx)
        secret_id = properties["SecretId"]
        target_type = properties["TargetType"]
        if target_type != "AWS::RDS::DBInstance":
            raise NotImplementedError(
                f"the sandbox attaches secrets to DB instances, not {target_type}"
            )
        database = rds_backends[ctx.account_id][ctx.region].describe_db_instances(
            properties["TargetId"]
        )[0]
        current = backend.get_secret_value(secret_id, None, None)
        document = json.loads(current["SecretString"])
        document.update(
            {
                "engine": database.engine,
                "host": database.address,
                "port": database.port,
                "dbInstanceIdentifier": database.db_instance_identifier,
            }
        )
        backend.put_secret_value(
            secret_id,
            json.dumps(document),
            None,
            None,
            ["AWSCURRENT"],
        )
        # The attachment's Ref is the secret's ARN; deleting it leaves the secret as it is.
        arn = str(backend.describe_secret(secret_id).arn)
        return Provisioned(arn, delete=lambda: None)

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        new = self.create(properties, ctx)  # writes the (new) target's details again
        return old.rebind(physical_id=new.physical_resource_id)
