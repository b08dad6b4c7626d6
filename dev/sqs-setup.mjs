// Creates the project's queues in the local SQS emulator (fauxqs), idempotently.
//
//   login-queue-dlq  plain queue that receives what the ingestor cannot process
//   login-queue      source queue, VisibilityTimeout 30, RedrivePolicy -> DLQ after 5 receives
//
// Called by dev/up.sh with the FR_* settings of dev/env.sh in the environment. Prints two lines,
// QUEUE_URL=... and DLQ_URL=..., with the URLs exactly as the emulator reports them from
// GetQueueUrl (fauxqs looks queues up by exact URL, so clients must use these strings).
//
// @aws-sdk/client-sqs is not a direct dependency: it comes pinned in package-lock.json as a
// dependency of fauxqs, and resolves from the repository root's node_modules.

import {
  SQSClient,
  CreateQueueCommand,
  GetQueueUrlCommand,
  GetQueueAttributesCommand,
  SetQueueAttributesCommand,
} from "@aws-sdk/client-sqs";

const env = (name, fallback) => process.env[name] ?? fallback;

const host = env("FR_HOST", "127.0.0.1");
const port = env("FR_SQS_PORT", "54566");
const queueName = env("FR_SQS_QUEUE", "login-queue");
const dlqName = env("FR_SQS_DLQ", "login-queue-dlq");

const sqs = new SQSClient({
  endpoint: `http://${host}:${port}`,
  region: env("FR_AWS_REGION", "us-east-1"),
  credentials: {
    accessKeyId: env("FR_AWS_ACCESS_KEY_ID", "test"),
    secretAccessKey: env("FR_AWS_SECRET_ACCESS_KEY", "test"),
  },
  maxAttempts: 5,
});

// CreateQueue is idempotent only when the attributes match; when an older run created the
// queue with other attributes, the emulator answers QueueNameExists (AWS: QueueAlreadyExists),
// and we bring the existing queue to the wanted attributes instead.
async function ensureQueue(name, attributes) {
  try {
    await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }));
  } catch (err) {
    // fauxqs names the error "AWS.SimpleQueueService.QueueNameExists"; AWS "QueueAlreadyExists".
    if (!/Queue(NameExists|AlreadyExists)$/.test(String(err?.name ?? ""))) throw err;
    const { QueueUrl } = await sqs.send(new GetQueueUrlCommand({ QueueName: name }));
    await sqs.send(new SetQueueAttributesCommand({ QueueUrl, Attributes: attributes }));
  }
  const { QueueUrl } = await sqs.send(new GetQueueUrlCommand({ QueueName: name }));
  return QueueUrl;
}

async function attributesOf(url, names) {
  const out = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: names }));
  return out.Attributes ?? {};
}

const dlqUrl = await ensureQueue(dlqName, {});
const { QueueArn: dlqArn } = await attributesOf(dlqUrl, ["QueueArn"]);
if (!dlqArn) throw new Error(`the emulator reported no QueueArn for ${dlqName}`);

const queueUrl = await ensureQueue(queueName, {
  VisibilityTimeout: "30",
  RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: 5 }),
});

// Read back what the emulator holds, so a silently ignored attribute fails here, not in a test.
const got = await attributesOf(queueUrl, ["VisibilityTimeout", "RedrivePolicy"]);
const redrive = JSON.parse(got.RedrivePolicy ?? "{}");
if (got.VisibilityTimeout !== "30" || redrive.deadLetterTargetArn !== dlqArn || Number(redrive.maxReceiveCount) !== 5) {
  throw new Error(`${queueName} has unexpected attributes: ${JSON.stringify(got)}`);
}

console.log(`QUEUE_URL=${queueUrl}`);
console.log(`DLQ_URL=${dlqUrl}`);
