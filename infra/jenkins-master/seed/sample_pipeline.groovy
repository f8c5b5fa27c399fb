// job-dsl seed (applied by CasC's `jobs:` at start): a sample pipeline that builds a Docker
// image on a `docker` agent (started on demand by the queue-scaler) and pushes it to the
// stack's build repository. The agent's instance role may push to that repository only;
// LONGSHORE_BUILD_REPOSITORY comes from the master's task definition.
def repository = System.getenv('LONGSHORE_BUILD_REPOSITORY') ?: ''
if (!repository) {
    throw new IllegalStateException('LONGSHORE_BUILD_REPOSITORY is not set on this master')
}
def registry = repository.tokenize('/')[0]
def region = registry.tokenize('.')[3]

pipelineJob('sample-docker-build') {
    description('longshore sample: builds a small image on a docker agent and pushes it to ' + repository)
    logRotator { numToKeep(20) }
    definition {
        cps {
            sandbox(true)
            script("""
pipeline {
    agent { label 'docker' }
    options { timeout(time: 30, unit: 'MINUTES') }
    environment {
        REPOSITORY = '${repository}'
        REGISTRY = '${registry}'
        AWS_REGION = '${region}'
    }
    stages {
        stage('Build') {
            steps {
                writeFile file: 'Dockerfile', text: 'FROM public.ecr.aws/docker/library/alpine:3.20\\nRUN echo built by longshore > /built-by\\n'
                sh 'docker build -t "\$REPOSITORY:\$BUILD_NUMBER" .'
            }
        }
        stage('Push') {
            steps {
                sh 'aws ecr get-login-password --region "\$AWS_REGION" | docker login --username AWS --password-stdin "\$REGISTRY"'
                sh 'docker push "\$REPOSITORY:\$BUILD_NUMBER"'
            }
        }
    }
    post { always { sh 'docker image rm "\$REPOSITORY:\$BUILD_NUMBER" || true' } }
}
""".stripIndent())
        }
    }
}
