#!/usr/bin/env bash
# Creates (or completes) everything the registry needs in one Google Cloud project:
# APIs, Artifact Registry, the GKE Autopilot cluster, Cloud SQL PostgreSQL with private IP, the
# bucket, Pub/Sub (topic, subscription, dead letters), the Cloud Scheduler job, the Google
# service accounts with their IAM bindings (Workload Identity included), the load balancer's
# address and certificate, and the namespace and Secrets in the cluster (the CDN's signed-URL
# key among them).
#
# Idempotent: every resource is looked up first and created only when missing; settings that
# may drift (subscription, scheduler job, bucket lifecycle) are set again to the same values;
# IAM bindings are added (adding one that exists changes nothing); generated secrets are made
# once and never replaced. Run it again at any time.
#
# Usage: PROJECT_ID=my-project DOMAIN=registry.example.com deploy/gcp/setup.sh
# The defaults below are those of deploy/k8s/overlays/production.
set -euo pipefail

PROJECT_ID=${PROJECT_ID:-deploys-registry}
REGION=${REGION:-asia-southeast1}
DOMAIN=${DOMAIN:-registry.deploys.app}
# The CDN's host name: blob GETs redirect there with signed URLs (CDN_DOMAIN in the overlay).
CDN_DOMAIN=${CDN_DOMAIN:-cdn.$DOMAIN}
CLUSTER=${CLUSTER:-registry}
NAMESPACE=${NAMESPACE:-registry}
NETWORK=${NETWORK:-default}
AR_REPOSITORY=${AR_REPOSITORY:-registry}
BUCKET=${BUCKET:-${PROJECT_ID}-blobs}
SQL_INSTANCE=${SQL_INSTANCE:-registry}
SQL_TIER=${SQL_TIER:-db-custom-2-7680}
SQL_VERSION=${SQL_VERSION:-POSTGRES_16}
DB_NAME=${DB_NAME:-registry}
DB_USER=${DB_USER:-registry}
TOPIC=${TOPIC:-registry-jobs}
SUBSCRIPTION=${SUBSCRIPTION:-registry-jobs}
DEAD_LETTER_TOPIC=${DEAD_LETTER_TOPIC:-registry-jobs-dead-letter}
SCHEDULER_JOB=${SCHEDULER_JOB:-registry-run-all}
SCHEDULE=${SCHEDULE:-0 2 * * *}
TIME_ZONE=${TIME_ZONE:-UTC}
ADDRESS=${ADDRESS:-registry-ip}
CERTIFICATE=${CERTIFICATE:-registry-cert}
# Kubernetes service account -> Google service account of the same name.
SERVICE_ACCOUNTS=(registry-distribution registry-management registry-jobs registry-migrate)
# The ones that read and write blobs.
STORAGE_USERS=(registry-distribution registry-management registry-jobs)

HERE=$(cd "$(dirname "$0")" && pwd)

log() { printf '==> %s\n' "$*"; }
# True when the describe-like command finds the resource.
exists() { "$@" >/dev/null 2>&1; }

gcloud config set project "$PROJECT_ID" >/dev/null
PROJECT_NUMBER=$(gcloud projects describe "$PROJECT_ID" --format='value(projectNumber)')
PUBSUB_AGENT="service-${PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
NODE_ACCOUNT="${PROJECT_NUMBER}-compute@developer.gserviceaccount.com"

log "APIs"
gcloud services enable \
    artifactregistry.googleapis.com cloudscheduler.googleapis.com compute.googleapis.com \
    container.googleapis.com iam.googleapis.com pubsub.googleapis.com \
    servicenetworking.googleapis.com sqladmin.googleapis.com storage.googleapis.com

log "Artifact Registry repository $AR_REPOSITORY (the services' images)"
if ! exists gcloud artifacts repositories describe "$AR_REPOSITORY" --location="$REGION"; then
    gcloud artifacts repositories create "$AR_REPOSITORY" --location="$REGION" \
        --repository-format=docker --description="Images of the registry services"
fi
# GKE nodes pull the images with the default compute service account.
gcloud artifacts repositories add-iam-policy-binding "$AR_REPOSITORY" --location="$REGION" \
    --member="serviceAccount:$NODE_ACCOUNT" --role=roles/artifactregistry.reader \
    --condition=None >/dev/null

log "Private services access on network $NETWORK (Cloud SQL private IP)"
if ! exists gcloud compute addresses describe google-managed-services-"$NETWORK" --global; then
    gcloud compute addresses create google-managed-services-"$NETWORK" --global \
        --purpose=VPC_PEERING --prefix-length=16 --network="$NETWORK"
fi
if [ -z "$(gcloud services vpc-peerings list --network="$NETWORK" \
        --service=servicenetworking.googleapis.com --format='value(peering)')" ]; then
    gcloud services vpc-peerings connect --service=servicenetworking.googleapis.com \
        --ranges=google-managed-services-"$NETWORK" --network="$NETWORK"
fi

log "GKE Autopilot cluster $CLUSTER (Workload Identity, Dataplane V2 and NEGs are built in)"
if ! exists gcloud container clusters describe "$CLUSTER" --region="$REGION"; then
    gcloud container clusters create-auto "$CLUSTER" --region="$REGION" \
        --network="$NETWORK" --release-channel=regular
fi
gcloud projects add-iam-policy-binding "$PROJECT_ID" \
    --member="serviceAccount:$NODE_ACCOUNT" --role=roles/container.defaultNodeServiceAccount \
    --condition=None >/dev/null

log "Cloud SQL instance $SQL_INSTANCE (private IP only)"
if ! exists gcloud sql instances describe "$SQL_INSTANCE"; then
    gcloud sql instances create "$SQL_INSTANCE" --region="$REGION" \
        --database-version="$SQL_VERSION" --edition=enterprise --tier="$SQL_TIER" \
        --network="projects/$PROJECT_ID/global/networks/$NETWORK" --no-assign-ip \
        --availability-type=regional --storage-auto-increase \
        --backup-start-time=01:00 --enable-point-in-time-recovery
fi
if ! exists gcloud sql databases describe "$DB_NAME" --instance="$SQL_INSTANCE"; then
    gcloud sql databases create "$DB_NAME" --instance="$SQL_INSTANCE"
fi

log "Bucket gs://$BUCKET"
if ! exists gcloud storage buckets describe "gs://$BUCKET"; then
    gcloud storage buckets create "gs://$BUCKET" --location="$REGION" \
        --default-storage-class=STANDARD --uniform-bucket-level-access \
        --public-access-prevention
fi
gcloud storage buckets update "gs://$BUCKET" --lifecycle-file="$HERE/bucket-lifecycle.json"

log "Pub/Sub: topic $TOPIC, subscription $SUBSCRIPTION, dead letters on $DEAD_LETTER_TOPIC"
for topic in "$TOPIC" "$DEAD_LETTER_TOPIC"; do
    if ! exists gcloud pubsub topics describe "$topic"; then
        gcloud pubsub topics create "$topic"
    fi
done
# Dead letters are kept a week on a subscription of their own, for inspection.
if ! exists gcloud pubsub subscriptions describe "$DEAD_LETTER_TOPIC"; then
    gcloud pubsub subscriptions create "$DEAD_LETTER_TOPIC" --topic="$DEAD_LETTER_TOPIC" \
        --message-retention-duration=7d --expiration-period=never
fi
# Pub/Sub's largest ack deadline is 600 s; the jobs service extends the lease of the message it
# works on until its job ends (up to 4 h), so a long runAll is not delivered twice. A failed
# job is nacked: retried after 1 to 10 minutes, moved to the dead letters after 5 attempts.
# A day's message is worth nothing once the next one is due, hence the retention.
SUBSCRIPTION_FLAGS=(
    --ack-deadline=600
    --min-retry-delay=60s --max-retry-delay=600s
    --dead-letter-topic="$DEAD_LETTER_TOPIC" --max-delivery-attempts=5
    --message-retention-duration=1d --expiration-period=never
)
if exists gcloud pubsub subscriptions describe "$SUBSCRIPTION"; then
    gcloud pubsub subscriptions update "$SUBSCRIPTION" "${SUBSCRIPTION_FLAGS[@]}"
else
    gcloud pubsub subscriptions create "$SUBSCRIPTION" --topic="$TOPIC" "${SUBSCRIPTION_FLAGS[@]}"
fi
# Pub/Sub itself moves undeliverable messages: it must publish to the dead-letter topic and
# acknowledge on the subscription.
gcloud pubsub topics add-iam-policy-binding "$DEAD_LETTER_TOPIC" \
    --member="serviceAccount:$PUBSUB_AGENT" --role=roles/pubsub.publisher >/dev/null
gcloud pubsub subscriptions add-iam-policy-binding "$SUBSCRIPTION" \
    --member="serviceAccount:$PUBSUB_AGENT" --role=roles/pubsub.subscriber >/dev/null

log "Cloud Scheduler job $SCHEDULER_JOB: runAll at '$SCHEDULE' $TIME_ZONE"
SCHEDULER_FLAGS=(
    --location="$REGION" --schedule="$SCHEDULE" --time-zone="$TIME_ZONE"
    --topic="$TOPIC" --message-body='{"job": "runAll"}'
)
if exists gcloud scheduler jobs describe "$SCHEDULER_JOB" --location="$REGION"; then
    gcloud scheduler jobs update pubsub "$SCHEDULER_JOB" "${SCHEDULER_FLAGS[@]}"
else
    gcloud scheduler jobs create pubsub "$SCHEDULER_JOB" "${SCHEDULER_FLAGS[@]}"
fi

log "Service accounts and IAM"
for account in "${SERVICE_ACCOUNTS[@]}"; do
    email="$account@$PROJECT_ID.iam.gserviceaccount.com"
    if ! exists gcloud iam service-accounts describe "$email"; then
        gcloud iam service-accounts create "$account" --display-name="$account (GKE)"
    fi
    # Workload Identity: the Kubernetes service account of the same name may act as it.
    gcloud iam service-accounts add-iam-policy-binding "$email" \
        --member="serviceAccount:$PROJECT_ID.svc.id.goog[$NAMESPACE/$account]" \
        --role=roles/iam.workloadIdentityUser >/dev/null
    # Every workload reaches PostgreSQL through the Cloud SQL Auth Proxy.
    gcloud projects add-iam-policy-binding "$PROJECT_ID" \
        --member="serviceAccount:$email" --role=roles/cloudsql.client --condition=None >/dev/null
done
for account in "${STORAGE_USERS[@]}"; do
    # Read, write, list and delete objects of this bucket only.
    gcloud storage buckets add-iam-policy-binding "gs://$BUCKET" \
        --member="serviceAccount:$account@$PROJECT_ID.iam.gserviceaccount.com" \
        --role=roles/storage.objectUser >/dev/null
done
gcloud pubsub subscriptions add-iam-policy-binding "$SUBSCRIPTION" \
    --member="serviceAccount:registry-jobs@$PROJECT_ID.iam.gserviceaccount.com" \
    --role=roles/pubsub.subscriber >/dev/null

log "Load balancer address $ADDRESS and certificate $CERTIFICATE for $DOMAIN and $CDN_DOMAIN"
if ! exists gcloud compute addresses describe "$ADDRESS" --global; then
    gcloud compute addresses create "$ADDRESS" --global
fi
if ! exists gcloud compute ssl-certificates describe "$CERTIFICATE" --global; then
    gcloud compute ssl-certificates create "$CERTIFICATE" --global \
        --domains="$DOMAIN,$CDN_DOMAIN"
fi

log "Namespace $NAMESPACE and Secret registry-secrets"
gcloud container clusters get-credentials "$CLUSTER" --region="$REGION"
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
if ! exists kubectl --namespace="$NAMESPACE" get secret registry-secrets; then
    # Made once: the database password is set on the SQL user in the same step.
    db_password=$(openssl rand -hex 24)
    if exists gcloud sql users describe "$DB_USER" --instance="$SQL_INSTANCE"; then
        gcloud sql users set-password "$DB_USER" --instance="$SQL_INSTANCE" \
            --password="$db_password"
    else
        gcloud sql users create "$DB_USER" --instance="$SQL_INSTANCE" --password="$db_password"
    fi
    kubectl --namespace="$NAMESPACE" create secret generic registry-secrets \
        --from-literal=DB_URL="postgres://$DB_USER:$db_password@127.0.0.1:5432/$DB_NAME" \
        --from-literal=INTERNAL_SECRET="$(openssl rand -hex 32)" \
        --from-literal=TOKEN_SECRET="$(openssl rand -hex 32)"
fi

if ! exists kubectl --namespace="$NAMESPACE" get secret registry-cdn-key; then
    # Cloud CDN's signed-URL key: 16 random bytes, base64url. GKE adds it to the CDN backend
    # (BackendConfig registry-cdn); the distribution service signs with it. Rotation:
    # deploy/README.md, "Rotating the CDN key".
    kubectl --namespace="$NAMESPACE" create secret generic registry-cdn-key \
        --from-literal=key="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_')"
fi

address=$(gcloud compute addresses describe "$ADDRESS" --global --format='value(address)')
log "Done. Point DNS for $DOMAIN and $CDN_DOMAIN at $address (and add $address to"
log "TRUSTED_PROXIES in the overlay); the certificate becomes ACTIVE once both resolve."
