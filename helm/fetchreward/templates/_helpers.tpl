{{/*
Chart name, overridable by nameOverride.
*/}}
{{- define "fetchreward.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every object name. Truncated to 40 characters: the longest suffix appended to it
("-ingestor-metrics") must still fit the 63-character limit of names and labels.
*/}}
{{- define "fetchreward.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "fetchreward.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object. Each template adds app.kubernetes.io/component itself.
*/}}
{{- define "fetchreward.labels" -}}
helm.sh/chart: {{ include "fetchreward.chart" . }}
{{ include "fetchreward.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fetchreward
{{- end }}

{{/*
Selector labels. Each template adds app.kubernetes.io/component itself.
*/}}
{{- define "fetchreward.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fetchreward.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The image reference: repository@digest when a digest is given, else repository:tag.
*/}}
{{- define "fetchreward.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Namespace of the operator (reader, admin) certificates.
*/}}
{{- define "fetchreward.operatorNamespace" -}}
{{- default .Release.Namespace .Values.tls.operatorNamespace }}
{{- end }}

{{/*
The database sslmode, checked: verify-full cannot work without the server's CA bundle.
*/}}
{{- define "fetchreward.databaseSslmode" -}}
{{- $mode := .Values.database.sslmode -}}
{{- if not (has $mode (list "disable" "require" "verify-full")) -}}
{{- fail (printf "database.sslmode must be verify-full, require or disable, not %q" $mode) -}}
{{- end -}}
{{- if and (eq $mode "verify-full") (not .Values.database.caConfigMap) -}}
{{- fail "database.sslmode=verify-full needs database.caConfigMap (the ConfigMap with the database server's CA bundle, e.g. the RDS bundle)" -}}
{{- end -}}
{{- $mode -}}
{{- end -}}

{{/*
The vault's deployment id, checked: required, and only what the vault and the Terraform
deployment_id accept.
*/}}
{{- define "fetchreward.vaultDeploymentId" -}}
{{- $id := required "vault.deploymentId is required: the deployment id of the KMS encryption context, equal to Terraform's deployment_id (terraform output -raw deployment_id)" .Values.vault.deploymentId | toString -}}
{{- if not (regexMatch "^[A-Za-z0-9._/-]{1,128}$" $id) -}}
{{- fail (printf "vault.deploymentId must be 1-128 letters, digits, -, _, . and /, not %q" $id) -}}
{{- end -}}
{{- $id -}}
{{- end -}}

{{/*
Whether the vault makes a KMS key per data key generation (a boolean, not a string).
*/}}
{{- define "fetchreward.generationKmsKeys" -}}
{{- $on := .Values.vault.generationKmsKeys -}}
{{- if not (kindIs "bool" $on) -}}
{{- fail (printf "vault.generationKmsKeys must be a boolean, true or false, not the %s %q" (kindOf $on) (toString $on)) -}}
{{- end -}}
{{- ternary "true" "false" $on -}}
{{- end -}}

{{/*
The key policy of the generation keys, checked: required with generationKmsKeys, and a JSON
object with a Statement.
*/}}
{{- define "fetchreward.generationKeyPolicy" -}}
{{- $policy := required "vault.generationKeyPolicy is required when vault.generationKmsKeys is true: the key policy of the generation keys, Terraform output generation_key_policy_json (--set-file vault.generationKeyPolicy=policy.json)" .Values.vault.generationKeyPolicy | toString -}}
{{- $parsed := fromJson $policy -}}
{{- if or (hasKey $parsed "Error") (not (hasKey $parsed "Statement")) -}}
{{- fail "vault.generationKeyPolicy must be a key policy in JSON (an object with a Statement): Terraform output generation_key_policy_json" -}}
{{- end -}}
{{- $policy -}}
{{- end -}}

{{/*
Whether the vault spools Detokenize's audit rows (VAULT_AUDIT_SPOOL_FILE), checked: "true" or
empty. The spool is only written while Detokenize answers from the read replica, and the vault
refuses to start with it but without DATABASE_READ_URL.
*/}}
{{- define "fetchreward.vaultAuditSpool" -}}
{{- $spool := .Values.vault.auditSpool -}}
{{- if not (kindIs "bool" $spool.enabled) -}}
{{- fail (printf "vault.auditSpool.enabled must be a boolean, true or false, not the %s %q" (kindOf $spool.enabled) (toString $spool.enabled)) -}}
{{- end -}}
{{- if $spool.enabled -}}
{{- if not .Values.vault.database.readUrlSecret.name -}}
{{- fail "vault.auditSpool.enabled needs vault.database.readUrlSecret.name: the spool keeps the audit rows of reveals answered by the read replica while the primary is down, and the vault refuses VAULT_AUDIT_SPOOL_FILE without DATABASE_READ_URL" -}}
{{- end -}}
true
{{- end -}}
{{- end -}}

{{/*
Numbers of the vault's settings, checked and printed as integers (a large float would
otherwise render as 6.048e+05).
*/}}
{{- define "fetchreward.vaultNumbers" -}}
{{- $days := .Values.vault.kmsDeletionWindowDays | int64 -}}
{{- if or (lt $days 7) (gt $days 30) -}}
{{- fail (printf "vault.kmsDeletionWindowDays must be between 7 and 30 (KMS's limits), not %v" .Values.vault.kmsDeletionWindowDays) -}}
{{- end -}}
{{- if lt (.Values.vault.generationSecs | int64) 0 -}}
{{- fail "vault.generationSecs must be 0 or more" -}}
{{- end -}}
{{- if lt (.Values.vault.backupRetentionDays | int64) 0 -}}
{{- fail "vault.backupRetentionDays must be 0 or more" -}}
{{- end -}}
{{- if lt (.Values.vault.tokenizeRate | int64) 1 -}}
{{- fail (printf "vault.tokenizeRate must be at least 1 value a second, not %v" .Values.vault.tokenizeRate) -}}
{{- end -}}
{{- if lt (.Values.vault.tokenizeBurst | int64) 10000 -}}
{{- fail (printf "vault.tokenizeBurst must be at least 10000 (the largest Tokenize call), not %v" .Values.vault.tokenizeBurst) -}}
{{- end -}}
{{- if not (has .Values.vault.forgetMode (list "tombstone" "refill")) -}}
{{- fail (printf "vault.forgetMode must be tombstone or refill, not %q" (toString .Values.vault.forgetMode)) -}}
{{- end -}}
{{- if and (not (kindIs "invalid" .Values.vault.dailyRevealLimit)) (lt (.Values.vault.dailyRevealLimit | int64) 0) -}}
{{- fail (printf "vault.dailyRevealLimit must be 0 (no limit) or more, not %v" .Values.vault.dailyRevealLimit) -}}
{{- end -}}
{{- if and (not (kindIs "invalid" .Values.vault.lookupRate)) (lt (.Values.vault.lookupRate | int64) 1) -}}
{{- fail (printf "vault.lookupRate must be at least 1 value a minute, not %v" .Values.vault.lookupRate) -}}
{{- end -}}
{{- end -}}

{{/*
A mask rule of RevealMasked, checked: what the vault reads (keep-groups:N, keep-last:N with N
from 1, or hide). Called with (list "vault.maskIp" RULE); returns the rule.
*/}}
{{- define "fetchreward.vaultMaskRule" -}}
{{- $key := index . 0 -}}
{{- $rule := index . 1 | toString | trim -}}
{{- if not (regexMatch "^(keep-groups:[1-9][0-9]*|keep-last:[1-9][0-9]*|hide)$" $rule) -}}
{{- fail (printf "%s must be keep-groups:N, keep-last:N (N from 1) or hide, not %q" $key $rule) -}}
{{- end -}}
{{- $rule -}}
{{- end -}}

{{/*
The personal identities of .Values.people, checked: each an object whose name is lowercase
letters, digits and '-' (the last segment of its SPIFFE id, and part of object names), listed
once. Returns them as a JSON list of {name, duration, renewBefore}, the defaults (8h, 1h)
filled in.
*/}}
{{- define "fetchreward.people" -}}
{{- $people := list -}}
{{- $names := list -}}
{{- range $i, $person := .Values.people -}}
{{- if not (kindIs "map" $person) -}}
{{- fail (printf "people[%d] must be an object such as {name: alice}, not the %s %q" $i (kindOf $person) (toString $person)) -}}
{{- end -}}
{{- $name := get $person "name" | toString -}}
{{- if or (gt (len $name) 63) (not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $name)) -}}
{{- fail (printf "people[%d].name must be 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit, not %q" $i $name) -}}
{{- end -}}
{{- if has $name $names -}}
{{- fail (printf "people[%d].name: %s is listed twice; each person has one Certificate" $i $name) -}}
{{- end -}}
{{- $names = append $names $name -}}
{{- $duration := get $person "duration" | default "8h" | toString -}}
{{- $renewBefore := get $person "renewBefore" | default "1h" | toString -}}
{{- $people = append $people (dict "name" $name "duration" $duration "renewBefore" $renewBefore) -}}
{{- end -}}
{{- toJson $people -}}
{{- end -}}

{{/*
The ServiceMonitor's scrape interval, checked: a duration the Prometheus Operator accepts
(e.g. 30s, 1m, 1m30s).
*/}}
{{- define "fetchreward.scrapeInterval" -}}
{{- $interval := .Values.monitoring.serviceMonitor.interval | toString -}}
{{- if or (not $interval) (not (regexMatch "^(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?$" $interval)) -}}
{{- fail (printf "monitoring.serviceMonitor.interval must be a duration such as 30s or 1m, not %q" $interval) -}}
{{- end -}}
{{- $interval -}}
{{- end -}}

{{/*
The alert rules of files/alerts.yml (a copy of deploy/observability/prometheus/alerts.yml), as
written: checked to be one YAML document whose only key is groups, so that indented under
spec it is the spec of a PrometheusRule. The text is returned, not parsed and written again:
its Prometheus templates ($labels, $value) and its line breaks stay as they are.
*/}}
{{- define "fetchreward.alertRules" -}}
{{- $text := .Files.Get "files/alerts.yml" -}}
{{- $rules := $text | fromYaml -}}
{{- if or (hasKey $rules "Error") (ne (keys $rules | sortAlpha | join ",") "groups") (regexMatch "(?m)^---" $text) -}}
{{- fail "files/alerts.yml must hold the alert rules of deploy/observability/prometheus/alerts.yml (one document with groups only); copy it into the chart" -}}
{{- end -}}
{{- $text -}}
{{- end -}}

{{/*
The port of common.otelExporterOtlpEndpoint: the one the URL gives, else 443 for https and 80
for http (as the exporter dials it).
*/}}
{{- define "fetchreward.otlpPort" -}}
{{- $url := .Values.common.otelExporterOtlpEndpoint | toString -}}
{{- $hostPort := regexReplaceAll "^[A-Za-z][A-Za-z0-9+.-]*://" $url "" | splitList "/" | first -}}
{{- if regexMatch ":[0-9]+$" $hostPort -}}
{{- regexFind "[0-9]+$" $hostPort -}}
{{- else if hasPrefix "https://" $url -}}
443
{{- else -}}
80
{{- end -}}
{{- end -}}

{{/*
An egress rule on one TCP port to a list of CIDRs, or to any address when the list is empty.
Called with (dict "port" PORT "cidrs" LIST).
*/}}
{{- define "fetchreward.egressToCidrs" -}}
- ports:
    - port: {{ .port }}
      protocol: TCP
  {{- with .cidrs }}
  to:
    {{- range . }}
    - ipBlock:
        cidr: {{ . | quote }}
    {{- end }}
  {{- end }}
{{- end -}}

{{/*
The egress rule to the cluster DNS pods, on UDP and TCP 53.
*/}}
{{- define "fetchreward.egressDns" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ required "networkPolicy.egress.dns.namespace is required: the namespace of the cluster DNS (kube-system)" .Values.networkPolicy.egress.dns.namespace | quote }}
      podSelector:
        matchLabels:
          {{- toYaml .Values.networkPolicy.egress.dns.podLabels | nindent 10 }}
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end -}}

{{/*
The egress rules every service's NetworkPolicy starts with: the cluster DNS on UDP and TCP 53,
and, when common.otelExporterOtlpEndpoint is set, the OTLP exporter's port.
*/}}
{{- define "fetchreward.egressCommon" -}}
{{ include "fetchreward.egressDns" . }}
{{- if .Values.common.otelExporterOtlpEndpoint }}
- ports:
    - port: {{ include "fetchreward.otlpPort" . }}
      protocol: TCP
  {{- with .Values.networkPolicy.egress.otlp.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end -}}

{{/*
Whether the ingestor is scaled by KEDA, checked: KEDA's ScaledObject makes an HPA of its own,
and two HPAs on one Deployment fight over its replica count.
*/}}
{{- define "fetchreward.ingestorKeda" -}}
{{- $keda := .Values.ingestor.keda -}}
{{- if $keda.enabled -}}
{{- if .Values.ingestor.autoscaling.enabled -}}
{{- fail "ingestor.keda.enabled and ingestor.autoscaling.enabled are both true: KEDA's ScaledObject creates its own HorizontalPodAutoscaler for the ingestor, and two autoscalers on one Deployment fight over its replicas. Set ingestor.autoscaling.enabled=false to scale on queue depth (or ingestor.keda.enabled=false to scale on CPU)" -}}
{{- end -}}
{{- if gt ($keda.minReplicaCount | int64) ($keda.maxReplicaCount | int64) -}}
{{- fail (printf "ingestor.keda.minReplicaCount (%v) must not exceed ingestor.keda.maxReplicaCount (%v)" $keda.minReplicaCount $keda.maxReplicaCount) -}}
{{- end -}}
{{- if and $keda.roleArn (eq (toString $keda.identityOwner) "workload") -}}
{{- fail "ingestor.keda.roleArn is set with ingestor.keda.identityOwner=workload: KEDA refuses both (the role is either the one given, assumed by the KEDA operator, or the ingestor's). Empty roleArn, or set identityOwner=keda" -}}
{{- end -}}
{{- if and (eq (toString $keda.identityOwner) "workload") (not .Values.ingestor.serviceAccount.roleArn) -}}
{{- fail "ingestor.keda.identityOwner=workload needs ingestor.serviceAccount.roleArn: KEDA assumes the role named by the eks.amazonaws.com/role-arn annotation of the ingestor's service account (IRSA), which the chart sets from it" -}}
{{- end -}}
{{- if not (has (toString $keda.identityOwner) (list "keda" "workload")) -}}
{{- fail (printf "ingestor.keda.identityOwner must be keda or workload, not %q" (toString $keda.identityOwner)) -}}
{{- end -}}
true
{{- end -}}
{{- end -}}


{{/*
The archive job's target, checked: required when the job is on, and an s3:// URL as
`fetchreward archive --to` reads it.
*/}}
{{- define "fetchreward.archiveUrl" -}}
{{- $url := required "archive.url is required when archive.enabled is true: s3://BUCKET/PREFIX of the archive bucket (terraform output -raw archive_url)" .Values.archive.url | toString -}}
{{- if not (regexMatch "^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\\S*)?$" $url) -}}
{{- fail (printf "archive.url must be s3://BUCKET/PREFIX (a bucket name of 3-63 lower-case letters, digits, '-' and '.'), not %q" $url) -}}
{{- end -}}
{{- $url -}}
{{- end -}}

{{/*
The archive job's age, checked: what `fetchreward archive run --older-than` accepts.
*/}}
{{- define "fetchreward.archiveOlderThan" -}}
{{- $age := .Values.archive.olderThan | toString -}}
{{- if not (regexMatch "^[0-9]+(mo|y|d)$" $age) -}}
{{- fail (printf "archive.olderThan must be an age such as 13mo, 2y or 400d, not %q" $age) -}}
{{- end -}}
{{- $age -}}
{{- end -}}
