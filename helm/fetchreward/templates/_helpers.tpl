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
