//! The agent secrets as the scaler writes them, through the real SDK to moto: each is tagged
//! with the ARN of the instance it is for (the tag the agent role's condition compares with
//! `ec2:SourceInstanceARN`, see template_rules.rs), a retried write keeps one right tag, and
//! the value still reads back decrypted. moto does not evaluate IAM, so whether AWS refuses
//! another instance's read is the template's claim, checked there, not here.

use std::collections::BTreeMap;

use aws_sdk_ssm::types::ResourceTypeForTagging;
use longshore::adapters::aws::ssm::{INSTANCE_ARN_TAG, SsmSecrets, agent_secret_path};
use longshore_farm::moto::MotoServer;

async fn tags(ssm: &aws_sdk_ssm::Client, name: &str) -> BTreeMap<String, String> {
    ssm.list_tags_for_resource()
        .resource_type(ResourceTypeForTagging::Parameter)
        .resource_id(name)
        .send()
        .await
        .expect("ListTagsForResource")
        .tag_list()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

async fn read(ssm: &aws_sdk_ssm::Client, name: &str) -> String {
    ssm.get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .expect("GetParameter")
        .parameter()
        .and_then(|p| p.value())
        .expect("value")
        .to_string()
}

#[tokio::test]
async fn each_agent_secret_is_tagged_with_its_own_instance_arn() {
    let moto = MotoServer::start().expect("moto");
    let sdk = moto.sdk_config().await;
    let region = sdk.region().expect("region").to_string();
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let secrets = SsmSecrets::new(ssm.clone());

    let first = agent_secret_path("ci", "i-0aaaaaaaaaaaaaaa1");
    let second = agent_secret_path("ci", "i-0bbbbbbbbbbbbbbb2");
    secrets.put_secret(&first, "secret-one").await.expect("put");
    secrets
        .put_secret(&second, "secret-two")
        .await
        .expect("put");
    // moto's account is 123456789012.
    let arn = |id: &str| format!("arn:aws:ec2:{region}:123456789012:instance/{id}");
    assert_eq!(
        tags(&ssm, &first).await,
        BTreeMap::from([(INSTANCE_ARN_TAG.to_string(), arn("i-0aaaaaaaaaaaaaaa1"))])
    );
    assert_eq!(
        tags(&ssm, &second).await,
        BTreeMap::from([(INSTANCE_ARN_TAG.to_string(), arn("i-0bbbbbbbbbbbbbbb2"))])
    );
    assert_eq!(read(&ssm, &first).await, "secret-one");

    // A retried tick overwrites the value; the tag stays the one right tag.
    secrets
        .put_secret(&first, "secret-one-again")
        .await
        .expect("put again");
    assert_eq!(read(&ssm, &first).await, "secret-one-again");
    assert_eq!(
        tags(&ssm, &first).await,
        BTreeMap::from([(INSTANCE_ARN_TAG.to_string(), arn("i-0aaaaaaaaaaaaaaa1"))])
    );

    // A fresh adapter (another cold start) learns the prefix again and tags the same way.
    let third = agent_secret_path("ci", "i-0ccccccccccccccc3");
    SsmSecrets::new(ssm.clone())
        .put_secret(&third, "secret-three")
        .await
        .expect("put");
    assert_eq!(
        tags(&ssm, &third).await[INSTANCE_ARN_TAG],
        arn("i-0ccccccccccccccc3")
    );

    secrets.delete_secret(&first).await.expect("delete");
    secrets
        .delete_secret(&first)
        .await
        .expect("delete again is fine");
}

#[tokio::test]
async fn a_path_without_an_instance_id_is_refused_before_anything_is_written() {
    let moto = MotoServer::start().expect("moto");
    let ssm = aws_sdk_ssm::Client::new(&moto.sdk_config().await);
    let err = SsmSecrets::new(ssm.clone())
        .put_secret("/longshore/ci/agents/", "secret")
        .await
        .expect_err("no instance ID");
    assert!(err.message.contains("instance ID"), "{err}");
    let listed = ssm
        .describe_parameters()
        .send()
        .await
        .expect("DescribeParameters");
    assert!(listed.parameters().is_empty(), "{listed:?}");
}
