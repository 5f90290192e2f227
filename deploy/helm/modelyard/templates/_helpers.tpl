{{/* The release's name for every object, at most 63 characters. */}}
{{- define "modelyard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "modelyard.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "modelyard.labels" -}}
{{ include "modelyard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The image; an empty tag is "<appVersion>-<extras>", the tag docs/kubernetes.md builds. */}}
{{- define "modelyard.image" -}}
{{- $tag := .Values.image.tag | default (printf "%s-%s" .Chart.AppVersion (.Values.extras | replace "," "-")) -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}

{{/*
The readiness check when API keys are set: /v2/health/ready then needs a key, and an httpGet
probe cannot read one from a Secret, so the check sends the first key of MODELYARD_API_KEY (the
image's HEALTHCHECK runs the same line).
*/}}
{{- define "modelyard.readyExec" -}}
exec:
  command:
    - python3
    - -c
    - "import os, urllib.request as u; key = os.environ.get('MODELYARD_API_KEY', '').split(',')[0].strip(); u.urlopen(u.Request('http://127.0.0.1:%s/v2/health/ready' % os.environ.get('MODELYARD_HTTP_PORT', '8000'), headers={'Authorization': 'Bearer ' + key} if key else {}), timeout=2)"
{{- end -}}
