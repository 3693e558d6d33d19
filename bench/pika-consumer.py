"""The hand-written Python baseline: the entry script behind pika, as RabbitMQ's Python RPC tutorial
(rpc_server.py) writes a server: a BlockingConnection, prefetch 1, and for each message parse it, call
run(), publish the reply, ack. No publisher confirms (the tutorial has none: this makes the baseline
faster, not slower). Run by bench/python-row.ts with Debian's python3-pika.

env: AMQP_URL, INPUT_QUEUE, REPLY_QUEUE, SCORE_PY (the entry script), AZUREML_MODEL_DIR
"""
import importlib.util
import json
import os

import pika

spec = importlib.util.spec_from_file_location('score', os.environ['SCORE_PY'])
score = importlib.util.module_from_spec(spec)
spec.loader.exec_module(score)
score.init()

connection = pika.BlockingConnection(pika.URLParameters(os.environ.get('AMQP_URL', 'amqp://guest:guest@localhost:5672')))
channel = connection.channel()
channel.basic_qos(prefetch_count=1)
reply_queue = os.environ['REPLY_QUEUE']


def on_request(ch, method, props, body):
    data = json.dumps(json.loads(body)['data'])
    result = score.run(data)
    ch.basic_publish(
        exchange='',
        routing_key=props.reply_to or reply_queue,
        properties=pika.BasicProperties(correlation_id=props.correlation_id, headers={'x-status': 'ok'}),
        body=json.dumps(result),
    )
    ch.basic_ack(delivery_tag=method.delivery_tag)


channel.basic_consume(queue=os.environ['INPUT_QUEUE'], on_message_callback=on_request)
print(json.dumps({'msg': 'ready', 'prefetch': 1}, separators=(',', ':')), flush=True)
channel.start_consuming()
